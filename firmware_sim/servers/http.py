"""A small HTTP/1.1 JSON server on asyncio streams, for the simulated MES.

The simulator needs GET endpoints answering JSON, with keep-alive, to real clients (httpx,
curl, the edge agent): that is a page of code, not a web framework dependency. Requests are
bounded (8 KiB request line and headers, 64 KiB body, 30 s idle) and anything unexpected gets
a JSON error: 400 for a malformed request, 404 for an unknown path, 405 for another method.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec

log = logging.getLogger(__name__)

_MAX_LINE: Final = 8192
_MAX_HEADERS: Final = 100
_MAX_BODY: Final = 65536
_IDLE_S: Final = 30.0
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
}
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    params: dict[str, str]  # path parameters (named regex groups)
    query: dict[str, str]


class HttpError(Exception):
    """Raise from a handler to answer ``status`` with ``{"error": code, "detail": detail}``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code


Handler = Callable[[Request], Any]  # returns a JSON-serialisable value
Route = tuple[str, re.Pattern[str], Handler]


class JsonHttpServer:
    def __init__(self, routes: Sequence[Route], *, host: str, port: int) -> None:
        self._routes = list(routes)
        self.host = host
        self._requested_port = port
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self._requested_port, limit=_MAX_LINE
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    @property
    def running(self) -> bool:
        return self._server is not None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection should close."""
        line = await asyncio.wait_for(reader.readline(), _IDLE_S)
        if not line:
            return False
        try:
            method, target, keep = await self._read_request(line, reader)
        except _Refused as exc:
            return await self._reply(writer, exc.status, _err(exc.code, str(exc)), False)
        status, body = self._dispatch(method, target)
        return await self._reply(writer, status, body, keep)

    @staticmethod
    async def _read_request(line: bytes, reader: asyncio.StreamReader) -> tuple[str, str, bool]:
        """(method, target, keep-alive) of a request whose body was read and dropped."""
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            raw = await asyncio.wait_for(reader.readline(), _IDLE_S)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise _Refused(400, "bad_request", "bad header")
            headers[name.strip().lower()] = value.strip()
        else:
            raise _Refused(400, "bad_request", "too many headers")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Refused(400, "bad_request", "bad request line")
        method, target, version = parts
        keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        length = headers.get("content-length", "0")
        if not length.isdigit() or "transfer-encoding" in headers:
            raise _Refused(400, "bad_request", "bad body framing")
        if int(length) > _MAX_BODY:
            raise _Refused(413, "too_large", "body too large")
        if int(length):
            await reader.readexactly(int(length))
        return method, target, keep

    def _dispatch(self, method: str, target: str) -> tuple[int, bytes]:
        url = urlsplit(target)
        path = unquote(url.path)
        query = dict(parse_qsl(url.query))
        allowed = False
        for route_method, pattern, handler in self._routes:
            m = pattern.fullmatch(path)
            if m is None:
                continue
            allowed = True
            if route_method != method:
                continue
            try:
                return 200, _encoder.encode(handler(Request(method, path, m.groupdict(), query)))
            except HttpError as exc:
                return exc.status, _err(exc.code, exc.detail)
            except Exception:
                log.exception("handler for %s %s failed", method, path)
                return 500, _err("internal", "the simulator failed to answer")
        if allowed:
            return 405, _err("method_not_allowed", f"{method} is not supported here; use GET")
        return 404, _err("not_found", f"no resource at {path}")

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, body: bytes, keep: bool) -> bool:
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
        return keep


def _err(code: str, detail: str) -> bytes:
    return _encoder.encode({"error": code, "detail": detail})


def route(method: str, pattern: str, handler: Handler) -> Route:
    return (method, re.compile(pattern), handler)
