"""The HTTP/1.1 GET client the HTTP source uses, against small real servers on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from edge_agent.sources.http_client import (
    HttpGetClient,
    HttpTooLarge,
    HttpTransportError,
)
from firmware_sim.stack.ports import free_port
from firmware_sim.stack.tls import generate_tls_material

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """Counts connections and keeps every request head it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        return head

    async def start(self, tls: ssl.SSLContext | None = None) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=tls)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[Server, int]]]]:
    servers: list[Server] = []

    async def make(handler: Handler, tls: ssl.SSLContext | None = None) -> tuple[Server, int]:
        server = Server(handler)
        servers.append(server)
        return server, await server.start(tls)

    yield make
    for server in servers:
        await server.stop()


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
    return head + b"".join(h + b"\r\n" for h in extra) + b"\r\n" + body


async def test_keep_alive_reuses_one_connection_and_sends_the_headers(serve) -> None:  # type: ignore[no-untyped-def]
    server: Server

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(ok(b'{"n": %d}' % len(server.requests)))
            await writer.drain()

    server, port = await serve(handler)
    client = HttpGetClient(
        f"http://127.0.0.1:{port}/api/v1/lines/3?x=1",
        headers={"Authorization": "Bearer t0k", "Accept": "application/json"},
    )
    try:
        bodies = [(await client.get()).body for _ in range(3)]
    finally:
        await client.aclose()
    assert bodies == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert server.connections == 1
    first = server.requests[0].decode()
    assert first.startswith("GET /api/v1/lines/3?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n" in first
    assert "Authorization: Bearer t0k\r\n" in first
    assert "Accept: application/json\r\n" in first


async def test_a_connection_the_server_closed_is_retried_once_on_a_fresh_one(serve) -> None:  # type: ignore[no-untyped-def]
    server: Server

    async def one_answer_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        writer.write(ok(b"[1]"))  # no "Connection: close": the client keeps it...
        await writer.drain()  # ...and the handler's return closes it (an idle timeout)

    server, port = await serve(one_answer_per_connection)
    client = HttpGetClient(f"http://127.0.0.1:{port}/")
    try:
        assert (await client.get()).body == b"[1]"
        await asyncio.sleep(0.05)
        assert (await client.get()).body == b"[1]"
    finally:
        await client.aclose()
    assert server.connections == 2


async def test_chunked_and_read_to_close_bodies_and_interim_responses(serve) -> None:  # type: ignore[no-untyped-def]
    replies = [
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;ext=1\r\n{"a":\r\n3\r\n 42\r\n1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n',
        b"HTTP/1.0 200 OK\r\n\r\n[7, 8]",  # no length: to the end of the connection
    ]
    server: Server

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(replies[len(server.requests) - 1])
        await writer.drain()
        if len(server.requests) == 1:
            await server.read_request(reader)  # the chunked answer kept the connection
            writer.write(replies[1])

    server, port = await serve(handler)
    client = HttpGetClient(f"http://127.0.0.1:{port}/")
    try:
        first = await client.get()
        assert (first.status, first.body) == (200, b'{"a": 42}')
        second = await client.get()
        assert (second.status, second.body) == (200, b"[7, 8]")
    finally:
        await client.aclose()
    assert server.connections == 1


@pytest.mark.parametrize(
    "reply",
    [
        ok(b"x" * 2000),  # Content-Length over the limit: refused before reading
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024 + b"\r\n"
        b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 5000,
    ],
)
async def test_bodies_over_the_limit_are_refused(serve, reply: bytes) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()

    _server, port = await serve(handler)
    client = HttpGetClient(f"http://127.0.0.1:{port}/", max_bytes=1500)
    try:
        with pytest.raises(HttpTooLarge, match="larger than 1500"):
            await client.get()
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n",  # not HTTP at all
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",  # cut short
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n{}",
        b"",  # closed without a word
    ],
)
async def test_garbled_or_broken_answers_are_transport_errors(serve, reply: bytes) -> None:  # type: ignore[no-untyped-def]
    server: Server

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(reply)
        await writer.drain()

    server, port = await serve(handler)
    client = HttpGetClient(f"http://127.0.0.1:{port}/")
    try:
        with pytest.raises(HttpTransportError):
            await client.get()
    finally:
        await client.aclose()
    assert len(server.requests) == 1  # a fresh connection that fails is not retried


async def test_timeout_and_refused_connection() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HttpGetClient(f"http://127.0.0.1:{port}/", timeout_s=0.2)
    try:
        with pytest.raises(HttpTransportError, match=r"no answer within 0\.2 s"):
            await client.get()
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    refused = HttpGetClient(f"http://127.0.0.1:{free_port()}/")
    with pytest.raises(HttpTransportError, match="ConnectionRefusedError"):
        await refused.get()


async def test_tls_verifies_by_default_and_can_be_told_not_to(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pki = generate_tls_material(tmp_path / "pki")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.server_cert, pki.server_key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok(b"{}"))
        await writer.drain()

    # The refused handshake against a blocking server in a thread: asyncio 3.11's TLS server
    # leaks the socket of a handshake the client aborts (a ResourceWarning, an error here).
    with socket.create_server(("127.0.0.1", 0)) as listener:
        refused: list[BaseException] = []

        def accept_one() -> None:
            conn, _ = listener.accept()
            try:
                tls.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError) as exc:
                refused.append(exc)
            finally:
                conn.close()

        thread = threading.Thread(target=accept_one)
        thread.start()
        strict = HttpGetClient(f"https://127.0.0.1:{listener.getsockname()[1]}/")
        with pytest.raises(HttpTransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await strict.get()  # our test CA is not in the system store
        thread.join(5)
    assert refused  # the server saw the client give up
    _server, port = await serve(handler, tls)
    lax = HttpGetClient(f"https://127.0.0.1:{port}/", verify_tls=False)
    try:
        assert (await lax.get()).body == b"{}"
    finally:
        await lax.aclose()


def test_bad_urls_and_header_injection_are_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        HttpGetClient("ftp://x/")
    with pytest.raises(ValueError, match="line breaks"):
        HttpGetClient("http://x/", headers={"X": "a\r\nEvil: 1"})
