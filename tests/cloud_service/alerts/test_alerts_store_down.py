"""The alert store down, for real: SQLite whose file is gone, PostgreSQL whose server connection
is terminated (``pg_terminate_backend``) as soon as the store takes it from the pool.

Every store operation raises ``MetadataUnavailable`` (the API's 503 with ``Retry-After``);
an operator's command that could not be stored leaves the lifecycle as it was, while the
lifecycle's own transitions are kept and written by the next step.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alerts_support import condition
from sqlalchemy import event, make_url

from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.routing import Router
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings
from cloud_service.alerts.store import SqlAlertStore
from cloud_service.errors import MetadataUnavailable
from cloud_service.metadata import MetadataStore

NOW = 1_790_000_000_000
MIN = 60_000
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.asynccontextmanager
async def store_down(metadata: MetadataStore, url: str) -> AsyncIterator[None]:
    """Take the database away, then give it back."""
    u = make_url(url)
    name = u.database
    assert name
    if u.get_backend_name() == "sqlite":
        await metadata.engine.dispose()  # no pooled connection keeps the old file open
        path = Path(name)
        aside = path.with_name(path.name + ".aside")
        os.rename(path, aside)
        os.mkdir(path)  # "unable to open database file"
        try:
            yield
        finally:
            await metadata.engine.dispose()
            os.rmdir(path)
            os.rename(aside, path)
        return

    def terminate(_dbapi: Any, record: Any, _proxy: Any) -> None:
        """Each connection taken from the pool (after its pre-ping) is killed at once."""
        pid = record.driver_connection.get_server_pid()
        subprocess.run(
            ["psql", PG_ADMIN, "-Atqc", f"SELECT pg_terminate_backend({pid})"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip

    event.listen(metadata.engine.sync_engine, "checkout", terminate)
    try:
        yield
    finally:
        event.remove(metadata.engine.sync_engine, "checkout", terminate)


def router() -> Router:
    settings = AlertSettings()
    return Router(settings, OutboxPolicy.from_settings(settings.outbox))


async def test_commands_while_the_store_is_down_are_refused_and_change_nothing(
    metadata: MetadataStore, metadata_url: str
) -> None:
    store = SqlAlertStore(metadata.engine)
    service = await AlertService.open(store, router())
    (raised,) = await service.observe([condition("lc7"), condition("lc8", False)], NOW)
    alert_id = raised.alert.id
    (other,) = await service.observe([condition("lc8")], NOW + 1)
    await service.shelve(other.alert.id, until_ms=NOW + 60 * MIN, actor="ana", now_ms=NOW + 2)

    async with store_down(metadata, metadata_url):
        # the lifecycle's own transition: refused too, but kept for the next write
        with pytest.raises(MetadataUnavailable):
            await service.observe([condition("lc7", False)], NOW + MIN)
        with pytest.raises(MetadataUnavailable):
            await service.acknowledge(alert_id, actor="ana", now_ms=NOW + 2 * MIN)
        with pytest.raises(MetadataUnavailable):
            await service.shelve(alert_id, until_ms=NOW + 60 * MIN, actor="ana", now_ms=NOW + 2)
        with pytest.raises(MetadataUnavailable):
            await service.unshelve(other.alert.id, actor="ana", now_ms=NOW + 3 * MIN)
        for read in (store.events_after(0), store.last_event_id(), store.load_tracks()):
            with pytest.raises(MetadataUnavailable):
                await read
        with pytest.raises(MetadataUnavailable):
            await store.claim_due(NOW, 10, 30_000)
        with pytest.raises(MetadataUnavailable):
            await store.prune(NOW)
        with pytest.raises(MetadataUnavailable):
            await store.next_due_ms()

        alert = service.lifecycle.alert(alert_id)
        assert alert is not None
        assert (alert.state.value, alert.acked, alert.shelved_until_ms) == ("cleared", False, None)
        shelved = service.lifecycle.alert(other.alert.id)
        assert shelved is not None
        assert shelved.shelved_until_ms == NOW + 60 * MIN

    # back: the kept clear is written first, then the command, given again, goes through
    acked = await service.acknowledge(alert_id, actor="ana", now_ms=NOW + 4 * MIN)
    assert [e.kind.value for e in acked] == ["acked", "closed"]
    logged = [(e.type, e.body) for e in await store.events_after(0)]
    assert [t for t, _ in logged] == [
        "alert.raised", "alert.raised", "alert.shelved", "alert.cleared", "alert.acked",
        "alert.closed",
    ]  # fmt: skip
    assert '"actor":"ana"' in logged[4][1]
    restored = await AlertService.open(store, router())
    assert [(a.id, a.shelved_until_ms) for a in restored.open_alerts()] == [
        (other.alert.id, NOW + 60 * MIN)
    ]


async def test_a_command_after_a_failed_write_does_not_lose_the_kept_records(
    metadata: MetadataStore, metadata_url: str
) -> None:
    """A refused command leaves the records kept from earlier steps in place."""
    store = SqlAlertStore(metadata.engine)
    service = await AlertService.open(store, router())
    async with store_down(metadata, metadata_url):
        with pytest.raises(MetadataUnavailable):
            await service.observe([condition("lc7")], NOW)
        (alert,) = service.open_alerts()
        with pytest.raises(MetadataUnavailable):
            await service.acknowledge(alert.id, actor="ana", now_ms=NOW + MIN)
    assert await service.tick(NOW + 2 * MIN) == []
    assert [e.type for e in await store.events_after(0)] == ["alert.raised"]
    (kept,) = (await AlertService.open(store, router())).open_alerts()
    assert (kept.id, kept.acked) == (alert.id, False)
