"""Server-Sent Events over a real uvicorn server: a reconnecting client misses nothing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from alerts_support import condition
from fastapi import FastAPI

from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.routing import Router
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings, MqttAlertSettings, StreamSettings
from cloud_service.alerts.store import (
    SqlAlertStore,
    StoredEvent,
    create_sqlite_engine,
    create_tables,
)
from cloud_service.alerts.stream import RESET, AlertStream, stream_router

NOW = 1_790_000_000_000


@asynccontextmanager
async def serve(stream: AlertStream) -> AsyncIterator[str]:
    app = FastAPI()
    app.include_router(stream_router(stream))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="none",
                            timeout_graceful_shutdown=2)  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{port}/alerts/stream"
    finally:
        stream.close()
        server.should_exit = True
        await task
        sock.close()


class SseClient:
    """Reads events from one streaming response; ``ids`` of everything received."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()
        self.ids: list[int] = []
        self.types: list[str] = []

    async def next(self) -> tuple[int, str, str]:
        fields: dict[str, str] = {}
        async for line in self.lines:
            if not line:
                if "data" in fields:
                    event_id = int(fields.get("id", "0"))
                    self.ids.append(event_id)
                    self.types.append(fields.get("event", "message"))
                    return event_id, fields.get("event", ""), fields["data"]
                fields.clear()
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise EOFError


def ev(i: int, site: str = "s1") -> StoredEvent:
    return StoredEvent(i, "alert.raised", site, f'{{"n":{i}}}')


async def until(predicate: Callable[[], bool], attempts: int = 2000) -> None:
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


async def wait_for_clients(stream: AlertStream, n: int) -> None:
    await until(lambda: stream.clients == n)


async def test_a_client_reconnecting_with_last_event_id_misses_nothing() -> None:
    stream = AlertStream(StreamSettings(buffer_size=100, heartbeat_s=5))
    async with serve(stream) as url, httpx.AsyncClient(timeout=30) as http:
        async with http.stream("GET", url) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            client = SseClient(response)
            await wait_for_clients(stream, 1)
            for i in (1, 2, 3):
                stream.publish(ev(i))
            for _ in range(3):
                await client.next()
        assert client.ids == [1, 2, 3]
        await wait_for_clients(stream, 0)
        for i in (4, 5):  # published while nobody listens
            stream.publish(ev(i))
        async with http.stream("GET", url, headers={"Last-Event-ID": "3"}) as response:
            again = SseClient(response)
            await again.next()
            await again.next()
            stream.publish(ev(6))
            await again.next()
        assert again.ids == [4, 5, 6]


async def test_replay_reaches_past_the_buffer_into_the_event_log(tmp_path: Path) -> None:
    engine = create_sqlite_engine(tmp_path / "alerts.sqlite")
    await create_tables(engine)
    store = SqlAlertStore(engine)
    settings = AlertSettings(mqtt=MqttAlertSettings(enabled=False))
    router = Router(settings, OutboxPolicy.from_settings(settings.outbox))
    stream = AlertStream(
        StreamSettings(buffer_size=2), store, start_after=await store.last_event_id()
    )
    service = await AlertService.open(store, router, stream=stream)
    try:
        async with serve(stream) as url, httpx.AsyncClient(timeout=30) as http:
            await service.observe([condition(f"lc{i}") for i in range(5)], NOW)  # ids 1..5
            async with http.stream("GET", url, params={"after": 1}) as response:
                client = SseClient(response)
                for _ in range(4):
                    await client.next()
                await service.observe([condition("lc9")], NOW + 1)
                await client.next()
            assert client.ids == [2, 3, 4, 5, 6]
            assert set(client.types) == {"alert.raised"}
            # Another site's client sees only its site.
            await service.observe([condition("lc1", site="s2")], NOW + 2)
            async with http.stream("GET", url, params={"site": "s2"},
                                   headers={"Last-Event-ID": "0"}) as response:  # fmt: skip
                only = SseClient(response)
                await only.next()
            assert only.ids == [7]
    finally:
        await engine.dispose()


async def test_a_client_too_far_behind_is_cut_off_without_a_gap() -> None:
    stream = AlertStream(StreamSettings(buffer_size=100, client_queue=2, heartbeat_s=60))
    reader = stream.events(last_id=0)
    pending = asyncio.ensure_future(anext(reader))
    await wait_for_clients(stream, 1)
    for i in range(1, 6):
        stream.publish(ev(i))
    with pytest.raises(StopAsyncIteration):
        await pending  # over its queue: ended before sending anything, so no gap
    assert stream.clients == 0
    resumed = stream.events(last_id=0)
    assert [await anext(resumed) for _ in range(5)] == [ev(i) for i in range(1, 6)]


async def test_without_a_log_a_too_old_id_gets_a_reset_event() -> None:
    stream = AlertStream(StreamSettings(buffer_size=2))
    for i in range(1, 6):
        stream.publish(ev(i))
    reader = stream.events(last_id=1)
    got = [await anext(reader) for _ in range(3)]
    assert got == [RESET, ev(4), ev(5)]


async def test_an_id_ahead_of_the_log_gets_a_reset_then_everything_after_the_newest() -> None:
    """E.g. the database was restored from a backup: ids 4.. are given again, and a client
    still at 500 would otherwise skip every one of them in silence."""
    stream = AlertStream(StreamSettings(buffer_size=10, heartbeat_s=1), start_after=3)
    reader = stream.events(last_id=500)
    assert await anext(reader) == RESET
    stream.publish(ev(4))
    stream.publish(ev(5, site="s2"))
    assert [await anext(reader), await anext(reader)] == [ev(4), ev(5, site="s2")]
    current = stream.events(last_id=5)  # the newest: nothing to reset
    stream.publish(ev(6))
    assert await anext(current) == ev(6)


async def test_over_http_an_id_ahead_of_the_log_gets_a_reset_event() -> None:
    stream = AlertStream(StreamSettings(buffer_size=10, heartbeat_s=5), start_after=2)
    async with serve(stream) as url, httpx.AsyncClient(timeout=30) as http:
        headers = {"Last-Event-ID": "500"}
        async with (
            asyncio.timeout(10),  # without the reset, nothing would ever come
            http.stream("GET", url, params={"site": "s1"}, headers=headers) as response,
        ):
            client = SseClient(response)
            assert (await client.next())[1] == "alert.reset"
            await wait_for_clients(stream, 1)
            stream.publish(ev(3))
            await client.next()
        assert (client.types, client.ids) == (["alert.reset", "alert.raised"], [0, 3])
