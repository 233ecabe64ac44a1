"""The API served by uvicorn on a free port: the live alert stream needs a read key and
carries an alert raised after the client connected; a key restricted to sites gets only
their events (the replayed ones too), and a stream ends once its key is revoked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import NOW, build_deps, condition

from cloud_service.alerts.settings import StreamSettings
from cloud_service.alerts.store import StoredEvent
from cloud_service.alerts.stream import AlertStream
from cloud_service.api import ApiServer, ApiSettings, Scope, SqlApiKeyStore, create_api
from cloud_service.api.auth import Principal, guards
from cloud_service.api.stream_routes import events_for
from cloud_service.metadata import MetadataStore
from cloud_service.plans import PlanBook
from cloud_service.settings import MetadataSettings


@pytest.mark.integration
async def test_the_stream_over_a_real_server(metadata: MetadataStore) -> None:
    changed: list[PlanBook] = []
    deps = await build_deps(metadata, changed, [NOW])
    _, token = await deps.keys.create("viewer")
    settings = ApiSettings(port=0)
    async with ApiServer(create_api(deps, settings), settings) as server:
        assert server.port > 0
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/api/v1/alerts/stream")).status_code == 401
            headers = {"Authorization": f"Bearer {token}"}
            # after=0: whether the alert is raised before or after the server subscribes, it
            # comes (replayed from the buffer, or live), so the test does not race the server.
            url = "/api/v1/alerts/stream?after=0"
            async with client.stream("GET", url, headers=headers) as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                lines = resp.aiter_lines()
                assert (await anext(lines)).startswith("retry:")

                task = asyncio.create_task(deps.alerts.observe([condition()], NOW))
                seen: list[str] = []
                async with asyncio.timeout(10):
                    async for line in lines:
                        if line:
                            seen.append(line)
                        if line.startswith("data:"):
                            break
                await task
    assert seen[0].startswith("id: ")
    assert seen[1] == "event: alert.raised"
    assert '"actor":"system"' in seen[2]


# -- who sees what, and for how long ------------------------------------------------------

QUICK = StreamSettings(heartbeat_s=0.1)


async def _until_data(lines: AsyncIterator[str]) -> list[str]:
    """The lines of the next event that carries data (heartbeats skipped)."""
    seen: list[str] = []
    async with asyncio.timeout(10):
        async for line in lines:
            if line.startswith(("id:", "event:", "data:")):
                seen.append(line)
            if line.startswith("data:"):
                return seen
    raise AssertionError(f"the stream ended after {seen}")


async def _until_heartbeat(events: AsyncIterator[StoredEvent | None]) -> list[StoredEvent]:
    got: list[StoredEvent] = []
    async with asyncio.timeout(10):
        async for e in events:
            if e is None:
                return got
            got.append(e)
    raise AssertionError(f"the events ended after {got}")


async def _valid(_: Principal) -> bool:
    return True


async def test_a_site_key_gets_its_sites_events_replayed(metadata: MetadataStore) -> None:
    deps = await build_deps(metadata, [], [NOW], stream_settings=QUICK)
    for subject, site in (("a", "plant-1"), ("b", "plant-2"), ("c", "plant-1")):
        await deps.alerts.observe([condition(subject, site=site)], NOW)
    who = Principal("plant1", Scope.READ, frozenset({"plant-1"}))
    everyone = Principal("all", Scope.READ)
    # replayed from the in-memory buffer, and from the store (a stream started afterwards)
    later = AlertStream(QUICK, deps.alert_store, start_after=await deps.alert_store.last_event_id())
    for stream in (deps.stream, later):
        replayed = await _until_heartbeat(events_for(stream, who, _valid, 0))
        assert [e.site for e in replayed] == ["plant-1", "plant-1"]
        after_first = await _until_heartbeat(events_for(stream, who, _valid, replayed[0].id))
        assert after_first == replayed[1:]
        assert len(await _until_heartbeat(events_for(stream, everyone, _valid, 0))) == 3


async def test_the_key_is_checked_again_at_each_heartbeat(metadata: MetadataStore) -> None:
    deps = await build_deps(metadata, [], [NOW], stream_settings=QUICK)
    answers = [True, True, False]

    async def valid(_: Principal) -> bool:
        return answers.pop(0)

    async with asyncio.timeout(10):
        got = [e async for e in events_for(deps.stream, Principal("k", Scope.READ), valid)]
    assert got == [None, None]  # two heartbeats, then the third check ends it
    assert answers == []
    for _ in range(500):  # its subscription ends (the loop finalises the inner generator)
        if not deps.stream.clients:
            break
        await asyncio.sleep(0.01)
    assert deps.stream.clients == 0


async def test_the_key_is_checked_again_while_events_flow() -> None:
    stream = AlertStream(StreamSettings(heartbeat_s=60))
    for i in range(1, 5):
        stream.publish(StoredEvent(i, "alert.raised", "plant-1", "{}"))
    times = iter([0.0, 0.5, 0.9, 1.2, 1.3])  # start, then one reading per event
    checks: list[float] = []

    async def revoked(_: Principal) -> bool:
        checks.append(0)
        return False

    who = Principal("k", Scope.READ)
    async with asyncio.timeout(10):
        got = [e async for e in events_for(stream, who, revoked, 0, clock=lambda: next(times))]
    assert [e.id for e in got if e is not None] == [1, 2]  # the third is past RECHECK_S
    assert len(checks) == 1


async def test_a_site_filtered_stream_still_checks_its_key_while_other_sites_are_busy() -> None:
    """With ``?site=plant-2`` and only plant-1's events flowing, a revoked key's stream
    still ends (the filter used to hide every event from the check)."""
    stream = AlertStream(StreamSettings(heartbeat_s=60))
    for i in range(1, 5):
        stream.publish(StoredEvent(i, "alert.raised", "plant-1", "{}"))
    times = iter([0.0, 0.5, 0.9, 1.2, 1.3])
    checks: list[float] = []

    async def revoked(_: Principal) -> bool:
        checks.append(0)
        return False

    who = Principal("k", Scope.READ)
    async with asyncio.timeout(10):
        got = [
            e
            async for e in events_for(
                stream, who, revoked, 0, site="plant-2", clock=lambda: next(times)
            )
        ]
    assert got == []  # nothing of plant-2; ended at the check past RECHECK_S
    assert len(checks) == 1


def test_a_key_record_that_does_not_parse_grants_nothing() -> None:
    from cloud_service.api.keys import _key  # noqa: PLC0415

    base = {"name": "k", "created_ms": 1, "revoked_ms": None, "last_used_ms": None}
    for scope, sites in [("read", '""'), ("read", "{}"), ("read", '["a b"]'), ("Read", "[]")]:
        key = _key({**base, "scope": scope, "sites": sites})
        assert not key.active, (scope, sites)
    assert _key({**base, "scope": "ack", "sites": '["plant-1"]'}).active


async def test_a_store_that_cannot_answer_does_not_end_streams() -> None:
    down = MetadataStore.from_settings(
        MetadataSettings(url="postgresql+asyncpg://postgres@127.0.0.1:1/none")  # type: ignore[arg-type]
    )
    try:
        access = guards(SqlApiKeyStore(down.engine), anonymous_read=False)
        assert await access.still_valid(Principal("k", Scope.READ, token="fd_" + "D" * 43))
    finally:
        await down.aclose()


@pytest.mark.integration
async def test_a_site_key_streams_its_sites_only(metadata: MetadataStore) -> None:
    deps = await build_deps(metadata, [], [NOW], stream_settings=QUICK)
    (theirs,) = await deps.alerts.observe([condition("old", site="plant-2")], NOW)
    (ours,) = await deps.alerts.observe([condition("old", site="plant-1")], NOW)
    _, token = await deps.keys.create("plant1", "read", ["plant-1"])
    settings = ApiSettings(port=0)
    async with ApiServer(create_api(deps, settings), settings) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": "0"}
            async with client.stream("GET", "/api/v1/alerts/stream", headers=headers) as resp:
                assert resp.status_code == 200
                lines = resp.aiter_lines()
                replayed = await _until_data(lines)
                assert ours.alert.id in replayed[2]
                assert theirs.alert.id not in replayed[2]
                await deps.alerts.observe([condition("new", site="plant-2")], NOW + 1)
                await deps.alerts.observe([condition("new", site="plant-1")], NOW + 2)
                live = await _until_data(lines)
    assert live[1] == "event: alert.raised"
    assert '"site":"plant-1"' in live[2]
    assert '"subject":"new"' in live[2]


@pytest.mark.integration
async def test_revoking_a_key_ends_its_open_stream(metadata: MetadataStore) -> None:
    deps = await build_deps(metadata, [], [NOW], stream_settings=QUICK)
    _, revoked = await deps.keys.create("viewer")
    _, kept = await deps.keys.create("wall")
    settings = ApiSettings(port=0)
    async with ApiServer(create_api(deps, settings), settings) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            url = "/api/v1/alerts/stream"
            gone = {"Authorization": f"Bearer {revoked}"}
            stays = {"Authorization": f"Bearer {kept}"}
            async with (
                client.stream("GET", url, headers=gone) as doomed,
                client.stream("GET", url, headers=stays) as alive,
            ):
                doomed_lines, alive_lines = doomed.aiter_lines(), alive.aiter_lines()
                assert (await anext(doomed_lines)).startswith("retry:")
                assert (await anext(alive_lines)).startswith("retry:")
                await deps.keys.revoke("viewer")
                async with asyncio.timeout(10):
                    rest = [line async for line in doomed_lines if line]
                assert set(rest) <= {": keep-alive"}  # ended, having sent nothing more
                await deps.alerts.observe([condition()], NOW)
                assert (await _until_data(alive_lines))[1] == "event: alert.raised"
            reconnect = await client.get(url, headers=gone)
            assert reconnect.status_code == 401
