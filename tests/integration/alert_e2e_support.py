"""Helpers for the end-to-end alert delivery tests (``test_alert_*_e2e.py``).

What the plant sees on its ``alerts`` channel, a real HTTP webhook receiver on a port chosen in
advance (so a test can point the service at it before it listens), the edge agent run in
process, the cloud service run as a ``cloud-service run`` child process, and small readers of
the service's SQLite outbox; and the whole cloud service run in the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from ingest_support import Publisher, batch, birth, now_ms, until

from cloud_service.alerts.records import AlertRecord
from cloud_service.app import CloudApp, build_app
from cloud_service.live.runtime import LiveRuntime
from cloud_service.settings import CloudSettings
from edge_agent.agent import Agent
from edge_agent.config import config_from_mapping
from edge_agent.runner import run_agent
from firmware_sim.stack import MosquittoServer
from shared.codec import encode
from shared.messages import Alert, GatewayState, State
from shared.topics import Channel, TopicScheme

REPO = Path(__file__).resolve().parents[2]


class AlertWatcher:
    """What a gateway sees on its ``alerts`` channel: the latest (retained) state per alert."""

    def __init__(self, server: MosquittoServer, site: str, gateway: str) -> None:
        self.alerts: dict[str, Alert] = {}
        self.deleted: set[str] = set()
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(server.host, server.port)
        self.client.subscribe(TopicScheme().alerts_subscription(site, gateway), 1)
        self.client.loop_start()
        assert subscribed.wait(5), "alert watcher did not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        alert_id = msg.topic.rsplit("/", 1)[-1]
        with self._lock:
            if not msg.payload:  # the retained state was removed: the alert closed
                self.deleted.add(alert_id)
                self.alerts.pop(alert_id, None)
                return
            alert = msgspec.json.decode(msg.payload, type=Alert)
            self.alerts[alert_id] = alert

    def get(self, alert_id: str) -> Alert | None:
        with self._lock:
            return self.alerts.get(alert_id)

    def of_rule(self, rule: str) -> list[Alert]:
        with self._lock:
            return [a for a in self.alerts.values() if a.rule == rule]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained_alert(server: MosquittoServer, site: str, gateway: str, alert_id: str) -> Alert | None:
    """What a gateway connecting now is handed for ``alert_id`` (None: nothing retained)."""
    watcher = AlertWatcher(server, site, gateway)
    try:
        # Retained messages come right after the SUBACK; a short grace covers the delivery.
        time.sleep(1.0)
        return watcher.get(alert_id)
    finally:
        watcher.close()


# -- webhooks ----------------------------------------------------------------------------------


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc


@dataclass
class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that answers ``statuses`` in turn, then 204.

    ``port`` may be fixed before :meth:`serving` starts it: a service can be pointed at the
    receiver while nothing listens there yet.
    """

    port: int = 0
    statuses: list[int] = field(default_factory=list)
    requests: list[Hook] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def snapshot(self) -> list[Hook]:
        with self._lock:
            return list(self.requests)

    def accepted(self) -> list[Hook]:
        return [h for h in self.snapshot() if 200 <= h.status < 300]

    @contextmanager
    def serving(self) -> Iterator[WebhookReceiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 204
                    receiver.requests.append(Hook(self.path, headers, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


# -- the service's SQLite metadata store ----------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    id: str
    channel: str
    recipient: str
    kind: str
    alert_id: str | None
    status: str
    attempts: int
    last_error: str | None


def outbox_rows(db: Path, channel: str | None = None) -> list[OutboxRow]:
    """The ``alert_outbox`` table as it is on disk now (empty if not created yet)."""
    if not db.exists():
        return []
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        try:
            rows = conn.execute(
                "SELECT id, channel, recipient, kind, alert_id, status, attempts, last_error"
                " FROM alert_outbox ORDER BY created_ms"
            ).fetchall()
        except sqlite3.OperationalError as exc:  # not migrated yet
            if "no such table" in str(exc):
                return []
            raise
    out = [OutboxRow(*row) for row in rows]
    return [r for r in out if channel is None or r.channel == channel]


def event_rows(db: Path, alert_id: str) -> list[tuple[str, str]]:
    """(kind, actor) of every logged transition of ``alert_id``, oldest first."""
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        rows = conn.execute(
            "SELECT kind, actor FROM alert_events WHERE alert_id = ? ORDER BY id", (alert_id,)
        ).fetchall()
    return [(str(k), str(a)) for k, a in rows]


# -- settings as a TOML file ----------------------------------------------------------------


def to_toml(values: Mapping[str, Any]) -> str:
    """A small TOML writer for settings: tables, arrays of tables, scalars, lists of scalars."""
    lines: list[str] = []
    _table(lines, [], values)
    return "\n".join(lines) + "\n"


def _table(lines: list[str], path: list[str], values: Mapping[str, Any]) -> None:
    scalars = {k: v for k, v in values.items() if not _is_table(v) and not _is_table_list(v)}
    if path and (scalars or not values):
        lines.append(f"[{'.'.join(path)}]")
    lines.extend(f"{k} = {_value(v)}" for k, v in scalars.items())
    for key, value in values.items():
        if _is_table(value):
            _table(lines, [*path, key], value)
        elif _is_table_list(value):
            for item in value:
                lines.append(f"[[{'.'.join([*path, key])}]]")
                lines.extend(f"{k} = {_value(v)}" for k, v in item.items())


def _is_table(value: object) -> bool:
    return isinstance(value, Mapping)


def _is_table_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


# -- processes ---------------------------------------------------------------------------------


class CloudProcess:
    """``cloud-service run --config FILE`` as a child process; its output goes to ``log``."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        script = Path(sys.executable).parent / "cloud-service"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "cloud_service.cli"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTDECK_CLOUD")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*command, "run", "--config", str(self.config), "--log-level", "INFO"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs at all."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(30)

    def terminate(self, timeout_s: float = 30) -> int | None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class AgentRun:
    """The real edge agent in this event loop (as ``edge-agent run`` runs it)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.config = config_from_mapping(values, use_env=False)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[Any] | None = None

    async def start(self) -> Agent:
        ready: asyncio.Future[Agent] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(
            run_agent(self.config, stop=self.stop, handle_signals=False, on_ready=ready)
        )
        return await asyncio.wait_for(ready, 15)

    async def finish(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)
            self.task = None


# -- the cloud service in process ------------------------------------------------------------


@asynccontextmanager
async def running(settings: CloudSettings) -> AsyncIterator[CloudApp]:
    """The whole cloud service in this event loop, until the block ends."""
    app = build_app(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await app.ingest.wait_connected(30)
        await until(lambda: app.runtime is not None and app.runtime.api is not None, 30, "the API")
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def runtime_of(app: CloudApp) -> LiveRuntime:
    runtime = app.runtime
    assert runtime is not None
    assert runtime.service is not None
    assert runtime.api is not None
    return runtime


def open_alert(app: CloudApp, rule: str, site: str) -> AlertRecord | None:
    service = runtime_of(app).service
    assert service is not None
    return next(
        (a for a in service.open_alerts() if a.key.rule == rule and a.key.site == site), None
    )


def raise_gateway_offline(pub: Publisher) -> None:
    """A gateway announces itself, sends data, then its retained state says offline."""
    pub.publish(birth(pub.site, pub.gateway, ["s"], period_s=1.0), pub.topic(Channel.BIRTH),
                retain=True)  # fmt: skip
    pub.publish(batch(pub.gateway, 1, 10, t0=now_ms() - 5_000))


def publish_offline(pub: Publisher) -> None:
    offline = State(state=GatewayState.OFFLINE, boot="b1", ts=now_ms())
    pub.publish(encode(offline), pub.topic(Channel.STATE), retain=True).wait_for_publish(5)
