"""HTTP source and client against hostile answers: numbers beyond a float, JSON nested past the
parser's depth, and a TLS server that stalls (the poll must end at ``timeout_s``)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import HttpSourceConfig, SignalConfig
from edge_agent.sources.http import HttpSource
from edge_agent.sources.http_client import HttpGetClient, HttpTransportError
from edge_agent.sources.values import reading_from, to_number
from firmware_sim.stack.tls import generate_tls_material
from shared.messages import Quality, Reading

NOW = 1_767_600_000_000


class Ticks:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def source(url: str, *fields: str, **extra: Any) -> HttpSource:
    cfg = HttpSourceConfig.from_mapping(
        {"type": "http", "id": "mes", "url": url, "timeout_s": 1.0, **extra}
    )
    sigs = [
        SignalConfig.from_mapping({"id": f, "source": "mes", "kind": "sensor", "field": f})
        for f in fields
    ]
    return HttpSource(cfg, sigs, monotonic=Ticks())


async def serve_json(body: bytes) -> tuple[asyncio.Server, int]:
    """A keep-alive server answering every GET with ``body``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def qualities(readings: list[Reading]) -> dict[str, tuple[float | None, Quality]]:
    return {r.signal: (r.value, Quality(r.quality)) for r in readings}


async def test_a_number_beyond_a_float_spoils_its_signal_only() -> None:
    body = b'{"good": 42, "huge": ' + b"9" * 400 + b', "neg": -' + b"9" * 400 + b"}"
    server, port = await serve_json(body)
    src = source(f"http://127.0.0.1:{port}/x", "good", "huge", "neg")
    try:
        for _ in range(2):
            got = qualities(await src.read(NOW))
            assert got == {
                "good": (42.0, Quality.GOOD),
                "huge": (None, Quality.BAD),
                "neg": (None, Quality.BAD),
            }
    finally:
        await src.close()
        server.close()
        await server.wait_closed()


async def test_json_nested_too_deeply_is_one_bad_answer_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    server, port = await serve_json(body)
    src = source(f"http://127.0.0.1:{port}/x", "a", "b", max_bytes=1_000_000)
    caplog.set_level(logging.WARNING, "edge_agent.sources.http")
    try:
        for _ in range(3):  # every poll: BAD, never an exception
            got = qualities(await src.read(NOW))
            assert got == {"a": (None, Quality.BAD), "b": (None, Quality.BAD)}
    finally:
        await src.close()
        server.close()
        await server.wait_closed()
    assert src.last_error is not None
    assert "nested too deeply" in src.last_error
    records = [r for r in caplog.records if r.name == "edge_agent.sources.http"]
    assert len(records) == 1  # one line while it lasts, not one per poll
    assert records[0].exc_info is None
    assert "nested too deeply" in records[0].getMessage()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(json_values, st.floats(allow_nan=False, allow_infinity=False))
def test_any_json_value_makes_a_reading_never_an_exception(value: object, scale: float) -> None:
    number = to_number(value, {"on": 1.0})
    assert number is None or isinstance(number, float)
    reading = reading_from("s", NOW, value, scale=scale, offset=0.0, value_map={"on": 1.0})
    if reading.quality == Quality.GOOD:
        assert reading.value is not None
    else:
        assert (reading.value, reading.quality) == (None, Quality.BAD)


# -- a TLS server that stalls -----------------------------------------------------------------


class StallingTlsServer:
    """A real TLS server (blocking, in a thread) that reads the request and then neither answers
    nor reads nor closes until released: a hung MES behind HTTPS. With ``answer_first`` it
    answers one request first, then stalls."""

    def __init__(self, tmp_path: Path, *, answer_first: bool = False) -> None:
        pki = generate_tls_material(tmp_path / "pki")  # a fresh self-signed CA and server cert
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(pki.server_cert, pki.server_key)
        self._answer_first = answer_first
        self.release = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        try:
            with self._tls.wrap_socket(conn, server_side=True) as tls:
                tls.recv(4096)
                if self._answer_first:
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                self.release.wait(60)
        except (ssl.SSLError, OSError):
            pass
        finally:
            conn.close()

    def __enter__(self) -> StallingTlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._thread.join(10)
        self.listener.close()


@pytest.fixture
def stalling(tmp_path: Path) -> Iterator[StallingTlsServer]:
    with StallingTlsServer(tmp_path) as server:
        yield server


async def test_a_stalled_tls_server_costs_timeout_s_not_the_tls_shutdown(
    stalling: StallingTlsServer,
) -> None:
    client = HttpGetClient(f"https://127.0.0.1:{stalling.port}/", verify_tls=False, timeout_s=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(HttpTransportError, match=r"no answer within 0\.5 s"):
            await client.get()
        assert time.monotonic() - started < 3  # was ~30.5 s: the TLS close waited for the peer
    finally:
        await client.aclose()


async def test_closing_a_tls_connection_to_a_stalled_server_is_bounded(tmp_path: Path) -> None:
    with StallingTlsServer(tmp_path, answer_first=True) as server:
        client = HttpGetClient(f"https://127.0.0.1:{server.port}/", verify_tls=False, timeout_s=0.5)
        assert (await client.get()).body == b"{}"
        started = time.monotonic()
        await client.aclose()  # a polite TLS close the server never answers
        assert time.monotonic() - started < 3


async def test_the_http_source_polls_a_stalled_tls_server_within_its_timeout(
    stalling: StallingTlsServer,
) -> None:
    src = source(f"https://127.0.0.1:{stalling.port}/x", "a", verify_tls=False, timeout_s=0.5)
    started = time.monotonic()
    try:
        got = qualities(await src.read(NOW))
    finally:
        await src.close()
    assert got == {"a": (None, Quality.COMM_FAILURE)}
    assert time.monotonic() - started < 3
