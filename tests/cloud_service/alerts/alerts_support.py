"""Helpers for the alert tests: a real HTTP webhook receiver and small builders."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloud_service.alerts.records import AlertKey, ConditionState, RuleType
from shared.messages import Severity


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers ``statuses`` in turn, then 204.

    ``hold_first``: the first request is read but not answered until ``release`` is set.
    """

    statuses: list[int] = field(default_factory=list)
    location: str | None = None
    hold_first: bool = False
    requests: list[Received] = field(default_factory=list)
    held: list[Received] = field(default_factory=list)  # read, never answered
    got_request: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]


@contextmanager
def running(receiver: Receiver) -> Iterator[Receiver]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                first = not receiver.requests and not receiver.got_request.is_set()
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                if first and receiver.hold_first:
                    status = 0
            if status == 0:
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.held.append(Received(self.path, headers, body, 0))
                receiver.got_request.set()
                receiver.release.wait(30)
                self.close_connection = True
                return  # never answered
            with lock:
                receiver.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                             status)
                )  # fmt: skip
            self.send_response(status)
            if receiver.location and 300 <= status < 400:
                self.send_header("location", receiver.location)
            self.send_header("content-length", "0")
            self.end_headers()
            receiver.got_request.set()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def condition(
    subject: str = "lc7",
    raise_met: bool = True,
    *,
    site: str = "s1",
    gateway: str | None = "gw-1",
    severity: Severity = Severity.WARNING,
    rule: str = "stuck",
) -> ConditionState:
    return ConditionState(
        key=AlertKey(rule, site, subject), rule_type=RuleType.SENSOR_STUCK, raise_met=raise_met,
        hold_met=raise_met, severity=severity, title=f"Load cell {subject} stuck",
        message=f"{subject} has not changed for 20 min", action=f"Check {subject}",
        figures={"stuck_min": 20.0}, reason="stuck_min = 20 (>= 15: yes)", gateway=gateway,
    )  # fmt: skip
