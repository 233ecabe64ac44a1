"""A small HTTP/1.1 GET client on asyncio streams, for the HTTP/MES source.

The source needs one thing: GET one URL again and again, with fixed headers, a timeout, a size
limit, optional TLS, no redirects. httpx does that and much more, and costs a gateway about 5 MB
of RSS (httpx, httpcore, anyio, h11, idna, and click/pygments when they happen to be installed);
this is the standard library only.

Supported: ``http`` and ``https`` (system trust store; ``verify_tls=False`` turns checks off),
a persistent connection reused across polls (a stale one is retried once on a fresh
connection), ``Content-Length``, ``Transfer-Encoding: chunked`` and read-to-close bodies, 1xx
interim responses skipped. Not supported, on purpose: redirects (an MES URL that moves is a
configuration change), compression (``Accept-Encoding: identity`` is sent), proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

MAX_HEADER_BYTES: Final = 64 * 1024
MAX_HEADERS: Final = 100
_CHUNK: Final = 64 * 1024


class HttpTransportError(Exception):
    """No usable answer: connection refused or reset, timeout, TLS failure, garbled protocol."""


class HttpTooLarge(Exception):
    """The body exceeds the configured limit (the connection is dropped)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names; a repeated header keeps the last value
    body: bytes


class HttpGetClient:
    """GETs one URL, reusing its connection. Not safe for concurrent calls (a source polls
    sequentially)."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        verify_tls: bool = True,
        max_bytes: int = 4 * 1024 * 1024,
        user_agent: str = "flightdeck-edge",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context()
            if not verify_tls:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = self._port == (443 if self._tls else 80)
        authority = self._host if ":" not in self._host else f"[{self._host}]"
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {authority}" + ("" if default_port else f":{self._port}"),
            f"User-Agent: {user_agent}",
            "Accept-Encoding: identity",
            "Connection: keep-alive",
        ]
        for name, value in (headers or {}).items():
            if any(c in name + value for c in "\r\n"):
                raise ValueError(f"header {name!r}: line breaks are not allowed")
            lines.append(f"{name}: {value}")
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self) -> Response:
        """One GET. Raises :class:`HttpTransportError` or :class:`HttpTooLarge`."""
        try:
            async with asyncio.timeout(self._timeout_s):
                reused = self._conn is not None
                try:
                    return await self._exchange()
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    self._abort()
                    if not reused or isinstance(exc, _Partial):
                        raise
                # A kept-alive connection the server had closed: once more, on a fresh one.
                return await self._exchange()
        except HttpTooLarge:
            self._abort()
            raise
        except TimeoutError:
            self._abort()
            raise HttpTransportError(f"no answer within {self._timeout_s:g} s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self._abort()
            raise HttpTransportError(f"{type(exc).__name__}: {exc}") from None
        except BaseException:  # cancelled mid-request: the connection is in an unknown state
            self._abort()
            raise

    async def aclose(self) -> None:
        """Close the connection politely (TLS close_notify), but within ``timeout_s``: a server
        that stalls does not hold the caller; its connection is then dropped."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        writer = conn[1]
        writer.close()
        try:
            async with asyncio.timeout(self._timeout_s):
                with contextlib.suppress(OSError, ssl.SSLError):  # closing a broken socket
                    await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()

    def _abort(self) -> None:
        """Drop the connection at once: after a failure there is nothing to shut down politely
        (a TLS shutdown with a stalled server would wait for its close_notify)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn[1].transport.abort()

    async def _exchange(self) -> Response:
        if self._conn is None:
            self._conn = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls else None,
                limit=MAX_HEADER_BYTES,
            )
        reader, writer = self._conn
        writer.write(self._request)
        await writer.drain()
        status, headers = await self._head(reader)
        while 100 <= status < 200:  # interim responses (103 Early Hints...): the real one follows
            status, headers = await self._head(reader)
        body = await self._body(reader, status, headers)
        keep = headers.get("connection", "").lower() != "close"
        if not keep:
            await self.aclose()
        return Response(status, headers, body)

    async def _head(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("connection closed before the status line")
        try:
            version, code, *_ = line.decode("latin-1").split(None, 2)
            status = int(code)
        except ValueError:
            raise _Partial(f"not an HTTP status line: {line[:80]!r}") from None
        if not version.startswith("HTTP/1."):
            raise _Partial(f"not HTTP/1.x: {version[:20]!r}")
        headers: dict[str, str] = {}
        size = len(line)
        while True:
            line = await reader.readline()
            size += len(line)
            if size > MAX_HEADER_BYTES or len(headers) > MAX_HEADERS:
                raise _Partial("response headers too large")
            if not line.endswith(b"\n"):
                raise _Partial("connection closed inside the headers")
            if line in (b"\r\n", b"\n"):
                return status, headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise _Partial(f"malformed header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()

    async def _body(
        self, reader: asyncio.StreamReader, status: int, headers: Mapping[str, str]
    ) -> bytes:
        if status in (204, 304):
            return b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await self._chunked(reader)
        length = headers.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                raise _Partial(f"bad Content-Length {length[:20]!r}") from None
            if size < 0:
                raise _Partial(f"bad Content-Length {length[:20]!r}")
            if size > self._max_bytes:
                raise HttpTooLarge(f"response larger than {self._max_bytes} bytes")
            return await self._exactly(reader, size)
        # Neither: the body runs to the end of the connection, which cannot be reused.
        body = bytearray()
        while chunk := await reader.read(_CHUNK):
            body += chunk
            if len(body) > self._max_bytes:
                raise HttpTooLarge(f"response larger than {self._max_bytes} bytes")
        await self.aclose()
        return bytes(body)

    async def _chunked(self, reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        while True:
            line = await reader.readline()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Partial(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                break
            if len(body) + size > self._max_bytes:
                raise HttpTooLarge(f"response larger than {self._max_bytes} bytes")
            body += await self._exactly(reader, size)
            if await reader.readline() not in (b"\r\n", b"\n"):
                raise _Partial("chunk not followed by CRLF")
        while (line := await reader.readline()) not in (b"\r\n", b"\n"):  # trailers
            if not line:
                raise _Partial("connection closed inside the trailers")
        return bytes(body)

    async def _exactly(self, reader: asyncio.StreamReader, size: int) -> bytes:
        try:
            return await reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise _Partial(f"body cut short: {len(exc.partial)} of {size} bytes") from None


class _Partial(ConnectionError):
    """The server answered, then broke the answer off or garbled it: never retried."""
