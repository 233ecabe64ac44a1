"""The agent's data path into the spool, without a broker: policies, expiry, corruption.

A real :class:`Agent` with a real SQLite spool; readings are handed to ``Agent.ingest`` as a
poller would, and a settable clock stands in for time (the agent takes its clock as a
parameter), so ages and expiry need no waiting.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from edge_agent import agent as agent_module
from edge_agent.spool.store import SpoolStore
from tests.edge_agent.spool_support import Clock, agent, alert, damage, disk_full, feed, wait_for


async def test_drop_newest_refuses_new_readings_and_counts_them(tmp_path: Path) -> None:
    clock = Clock()
    a = agent(tmp_path, clock, max_bytes=4096, policy="drop_newest")
    await feed(a, clock, 200)
    totals = a.store.totals
    assert totals.bytes <= 4096
    assert totals.readings + a.store.ledger.total() == 800  # kept + refused = read
    assert a.store.ledger.per_reason().keys() == {"spool_full"}
    assert set(a.store.ledger.per_signal().values()) == {a.store.ledger.per_signal()["s0"]}
    oldest = a.store.fetch(a.ordinal, 1)
    assert oldest is not None  # the oldest kept: that is this policy
    a.store.close()


async def test_drop_oldest_keeps_the_newest_within_the_bound(tmp_path: Path) -> None:
    clock = Clock()
    a = agent(tmp_path, clock, max_bytes=4096)
    await feed(a, clock, 200)
    assert a.store.totals.bytes <= 4096 + 1024  # plus at most the open batch
    assert a.store.totals.readings + a.store.ledger.total() == 800
    assert a.store.fetch(a.ordinal, 1) is None
    assert a.birth().dropped == a.store.ledger.per_signal()
    a.store.close()


async def test_old_batches_expire_by_age(tmp_path: Path) -> None:
    clock = Clock()
    a = agent(tmp_path, clock, max_age_s=60)
    await feed(a, clock, 50)  # 20 closed batches, created over 5 s
    assert a.store.ledger.total() == 0
    clock.wall += 60_000 - 2_000  # the first ~3 s of batches are now over a minute old
    clock.mono += 60_000 - 2_000  # (time passes: both clocks move)
    a.expire()
    await asyncio.sleep(0)
    expired = a.store.ledger.per_reason()["expired"]
    assert 0 < expired < 200
    assert a.store.totals.readings + expired == 200
    a.store.close()


async def test_a_spool_that_turns_corrupt_while_running_is_replaced(tmp_path: Path) -> None:
    clock = Clock()
    a = agent(tmp_path, clock)
    await feed(a, clock, 400)  # 160 batches
    path = a.store.path
    size = damage(a)
    a.expire()  # reads the oldest rows: SQLite reports corruption
    await feed(a, clock, 10)
    status = a.snapshot()
    assert status.spool.corrupt_at_runtime == 1
    (moved,) = status.spool.quarantined
    assert await asyncio.to_thread(os.path.getsize, moved) == size  # kept for recovery
    assert status.drops_by_reason["spool_corrupt"] > 0  # what was lost, counted
    assert status.spool.readings > 0  # and the agent goes on in a fresh spool
    assert status.drops_by_reason["spool_corrupt"] + status.spool.readings == 4 * 410
    a.store.close()
    SpoolStore(path).close()  # the fresh file is healthy


async def test_a_step_of_the_wall_clock_does_not_expire_the_spool(tmp_path: Path) -> None:
    clock = Clock()
    a = agent(tmp_path, clock, max_age_s=3600)
    await feed(a, clock, 50)
    clock.wall += 31 * 86_400_000  # a bogus NTP answer: a month ahead, no time passed
    a.expire()
    await asyncio.sleep(0)
    assert a.store.ledger.total() == 0
    assert a.store.totals.readings == 200
    assert a.clock_steps == 1
    clock.wall -= 31 * 86_400_000  # corrected again; then an hour really passes
    clock.wall += 3_601_000
    clock.mono += 3_601_000
    a.expire()
    await asyncio.sleep(0)
    assert a.store.ledger.per_reason() == {"expired": 200}
    a.store.close()


async def test_a_full_disk_holds_readings_in_memory_and_loses_none(tmp_path: Path) -> None:
    clock = Clock()
    a = agent(tmp_path, clock)
    await feed(a, clock, 20)
    disk_full(a, True)
    await feed(a, clock, 300)  # 1,200 readings that do not fit
    status = a.snapshot().spool
    assert (status.writable, status.write_errors > 0, status.held_bytes > 0) == (False, True, True)
    assert "full" in (status.last_write_error or "")
    assert status.readings < 1200  # they are not in the file
    disk_full(a, False)
    await wait_for(lambda: a.store.totals.readings == 4 * 320)  # the retry wrote them
    assert a.snapshot().spool.writable
    assert a.store.ledger.total() == 0
    seqs = [a.store.fetch(a.ordinal, seq) for seq in range(1, 4 * 320 // 10 + 1)]
    assert all(b is not None for b in seqs)  # every batch, none missing
    await feed(a, clock, 5)  # and the data path goes on
    assert a.store.totals.readings == 4 * 325
    a.store.close()
    again = SpoolStore(tmp_path / "spool.db")
    assert again.totals.readings == 4 * 325  # committed, not only in memory
    again.close()


async def test_past_the_memory_bound_a_full_disk_refuses_readings_and_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "UNSAVED_MAX_BYTES", 2000)
    clock = Clock()
    a = agent(tmp_path, clock)
    await feed(a, clock, 10)
    disk_full(a, True)
    await feed(a, clock, 300)
    refused = a.store.ledger.per_reason().get("spool_error", 0)
    assert refused > 0
    disk_full(a, False)
    await wait_for(lambda: a.store.totals.readings + refused == 4 * 310)
    assert a.birth().dropped == a.store.ledger.per_signal()
    a.store.close()
    again = SpoolStore(tmp_path / "spool.db")  # the counts reached the file too
    assert again.ledger.per_reason() == {"spool_error": refused}
    again.close()


async def test_an_operator_ack_made_while_the_disk_is_full_reaches_the_spool(
    tmp_path: Path,
) -> None:
    clock = Clock()
    a = agent(tmp_path, clock)
    a.on_alert(alert("a1"))
    await feed(a, clock, 2)
    disk_full(a, True)
    await feed(a, clock, 50)
    a.acknowledge("a1", "maria", "on it")
    assert [p.alert for p in a.alerts.pending_acks()] == ["a1"]
    disk_full(a, False)
    await wait_for(lambda: not a.store.failed_since_commit and a.spool_errors > 0)
    await feed(a, clock, 1)
    a.store.close()
    again = SpoolStore(tmp_path / "spool.db")
    assert [row[0] for row in again.query("SELECT alert FROM alert_acks")] == ["a1"]
    again.close()


async def test_alerts_and_operator_acks_survive_a_spool_replaced_after_corruption(
    tmp_path: Path,
) -> None:
    clock = Clock()
    a = agent(tmp_path, clock)
    a.on_alert(alert("a1"))
    await feed(a, clock, 100)
    a.acknowledge("a1", "maria", "on it")  # not yet delivered: no broker here
    await feed(a, clock, 1)
    path = a.store.path
    damage(a)
    a.expire()
    await feed(a, clock, 2)
    assert a.snapshot().spool.corrupt_at_runtime == 1
    assert [x.id for x in a.active_alerts()] == ["a1"]  # what the andon light reads
    assert a.active_alerts()[0].acked
    assert [p.alert for p in a.alerts.pending_acks()] == ["a1"]
    a.store.close()
    fresh = SpoolStore(path)
    assert [row[0] for row in fresh.query("SELECT id FROM alerts")] == ["a1"]
    assert [row[0] for row in fresh.query("SELECT alert FROM alert_acks")] == ["a1"]
    fresh.close()
