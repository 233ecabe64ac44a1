"""The local status page: a deliberately tiny HTTP/1.1 server on asyncio (no web framework on
a gateway), bound to localhost by default.

Routes: ``GET /`` (HTML), ``GET /status.json``, ``GET /healthz``, and
``POST /alerts/{id}/ack`` (form or JSON: ``operator``, ``comment``, ``token``) for operators to
acknowledge an alert. One request per connection, bounded sizes and a read timeout. A POST
whose ``Origin`` names another host is refused (a web page elsewhere cannot acknowledge alerts
through an operator's browser); ``status.ack_token`` adds a shared secret when the page is
exposed beyond localhost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from edge_agent.alerts import UnknownAlertError
from edge_agent.config import StatusConfig
from edge_agent.status import AgentStatus, render_html, to_json
from shared.codec import encode
from shared.messages import AlertAck

log = logging.getLogger(__name__)

MAX_HEAD: Final = 16 * 1024
MAX_BODY: Final = 16 * 1024
READ_TIMEOUT_S: Final = 5.0
_ACK_PATH: Final = re.compile(r"^/alerts/(?P<id>[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})/ack$")
_OPERATOR: Final = re.compile(r"^[^\x00-\x1f\x7f]{1,256}\Z")
_COMMENT: Final = re.compile(r"^[^\x00-\x08\x0b-\x1f\x7f]{0,4096}\Z")
_REASONS: Final = {
    200: "OK",
    303: "See Other",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


class StatusHandlers(Protocol):
    def snapshot(self) -> AgentStatus: ...

    def acknowledge(self, alert_id: str, operator: str, comment: str) -> AlertAck: ...


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    location: str | None = None


class BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class StatusServer:
    """Serves the status page until :meth:`stop`."""

    def __init__(self, config: StatusConfig, handlers: StatusHandlers) -> None:
        self.config = config
        self.handlers = handlers
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._serve, self.config.host, self.config.port, limit=MAX_HEAD
        )
        sockets = self._server.sockets or ()
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.config.port
        log.info("status page on http://%s:%d/", self.config.host, self.port)
        return self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response = await asyncio.wait_for(self._handle(reader), READ_TIMEOUT_S)
        except BadRequestError as exc:
            response = Response(exc.status, str(exc).encode())
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            response = Response(400, b"bad request")
        except Exception:  # a bug: answer 500, keep serving
            log.exception("status page: request failed")
            response = Response(500, b"internal error")
        with contextlib.suppress(OSError):
            writer.write(_serialize(response))
            await writer.drain()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader) -> Response:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequestError(400, "bad request line")
        method, target = parts[0], parts[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        path = urlsplit(target).path
        if method == "GET":
            return self._get(path)
        if method != "POST":
            raise BadRequestError(405, "method not allowed")
        length = int(headers.get("content-length", "0") or "0")
        if length < 0 or length > MAX_BODY:
            raise BadRequestError(413, "body too large")
        body = await reader.readexactly(length) if length else b""
        return self._post(path, headers, body)

    def _get(self, path: str) -> Response:
        if path == "/healthz":
            return Response(200, b"ok\n")
        if path == "/status.json":
            return Response(200, to_json(self.handlers.snapshot()), "application/json")
        if path == "/":
            page = render_html(
                self.handlers.snapshot(), token_required=self.config.ack_token is not None
            )
            return Response(200, page.encode(), "text/html; charset=utf-8")
        raise BadRequestError(404, "not found")

    def _post(self, path: str, headers: dict[str, str], body: bytes) -> Response:
        match = _ACK_PATH.match(path)
        if match is None:
            raise BadRequestError(404, "not found")
        origin = headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != headers.get("host", ""):
            raise BadRequestError(403, "cross-origin request refused")
        is_json = headers.get("content-type", "").startswith("application/json")
        fields = _parse_body(body, is_json=is_json)
        expected = self.config.ack_token
        if expected is not None:
            given = headers.get("x-flightdeck-token") or fields.get("token", "")
            if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
                raise BadRequestError(403, "wrong or missing token")
        operator = fields.get("operator", "").strip()
        comment = fields.get("comment", "")
        if not _OPERATOR.match(operator):
            raise BadRequestError(400, "operator: 1-256 printable characters")
        if not _COMMENT.match(comment):
            raise BadRequestError(400, "comment: up to 4096 characters, no control characters")
        alert_id = unquote(match["id"])
        try:
            ack = self.handlers.acknowledge(alert_id, operator, comment)
        except UnknownAlertError as exc:
            raise BadRequestError(404, str(exc)) from None
        if is_json:
            return Response(200, encode(ack), "application/json")
        return Response(303, b"acknowledged\n", location="/")


def _parse_body(body: bytes, *, is_json: bool) -> dict[str, str]:
    try:
        if is_json:
            doc = json.loads(body or b"{}")
            if not isinstance(doc, dict):
                raise BadRequestError(400, "expected a JSON object")
            return {k: v for k, v in doc.items() if isinstance(k, str) and isinstance(v, str)}
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(400, f"unreadable body: {exc}") from None
    return {k: v[0] for k, v in form.items() if v}


def _serialize(r: Response) -> bytes:
    head = [
        f"HTTP/1.1 {r.status} {_REASONS.get(r.status, 'Error')}",
        f"Content-Type: {r.content_type}",
        f"Content-Length: {len(r.body)}",
        "Connection: close",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline';"
        " form-action 'self'",
    ]
    if r.location:
        head.append(f"Location: {r.location}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + r.body


async def fetch_status(host: str, port: int, timeout_s: float = 3.0) -> AgentStatus:
    """``GET /status.json`` from a running agent (for ``edge-agent status``)."""
    from edge_agent.status import status_decoder  # noqa: PLC0415

    body = await http_request(host, port, "GET", "/status.json", timeout_s=timeout_s)
    return status_decoder.decode(body)


async def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout_s: float = 3.0,
    on_status: Callable[[int], None] | None = None,
) -> bytes:
    """A minimal HTTP/1.1 client for this server (the CLI needs no HTTP library)."""

    async def go() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in (headers or {}).items()]
            head.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        status_line, _, rest = raw.partition(b"\r\n")
        status = int(status_line.split(b" ")[1])
        if on_status is not None:
            on_status(status)
        payload = rest.partition(b"\r\n\r\n")[2]
        if status >= 400:
            raise BadRequestError(status, payload.decode("utf-8", "replace").strip())
        return payload

    return await asyncio.wait_for(go(), timeout_s)
