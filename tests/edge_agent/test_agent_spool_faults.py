"""Faults on top of faults: a spool that cannot be written while acks, expiry, drop policy,
clock steps and corruption go on (found by reviewing the disk-full handling).

Real SQLite faults: ``max_page_count`` (disk full) and ``query_only`` (a file that cannot be
written). The retry backoff is shortened so recovery needs no long waits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent import agent as agent_module
from edge_agent.agent import Agent
from edge_agent.spool.store import SpoolStore
from shared.messages import Ack, Quality, Reading
from tests.edge_agent.spool_support import (
    T0,
    Clock,
    Poller,
    agent,
    alert,
    damage,
    disk_full,
    feed,
    wait_for,
)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "SPOOL_RETRY_MIN_S", 0.05)
    monkeypatch.setattr(agent_module, "SPOOL_RETRY_MAX_S", 0.2)


def poll(a: Agent, clock: Clock) -> None:
    clock.wall += 100
    clock.mono += 100
    a.ingest(Poller(), [Reading(f"s{i}", clock.wall, 1.5, Quality.GOOD) for i in range(4)])  # type: ignore[arg-type]


def until_down(a: Agent, clock: Clock) -> int:
    """Polls (in one loop turn) until a write fails; returns how many."""
    n = 0
    while not a.spool_down:
        poll(a, clock)
        n += 1
        assert n < 2000, "the disk never filled"
    return n


def in_file(a: Agent) -> tuple[int, int]:
    batches, readings = a.store.query("SELECT COUNT(*), TOTAL(readings) FROM batches")[0]
    return int(batches), int(readings)


def recovered(a: Agent) -> bool:
    return not a.spool_down and not a.store.failed_since_commit


def ack(seq: int) -> Ack:
    return Ack(gateway="gw", boot="b1", seq=seq, ts=T0)


async def test_an_ack_lost_with_its_transaction_is_redone_and_totals_match_the_file(
    tmp_path: Path,
) -> None:
    clock = Clock()
    a = agent(tmp_path, clock)
    await feed(a, clock, 50)
    a.on_ack(ack(5), retained=False)  # deletes 1..5 in the pending transaction...
    disk_full(a, True)
    until_down(a, clock)  # ...which the full disk rolls back
    a.on_ack(ack(8), retained=False)  # and another ack while down
    disk_full(a, False)
    await wait_for(lambda: recovered(a))
    await asyncio.sleep(0)
    assert (a.store.totals.batches, a.store.totals.readings) == in_file(a)
    assert a.store.fetch(a.ordinal, 8) is None
    assert a.store.fetch(a.ordinal, 9) is not None
    a.store.close()


async def test_expiry_after_a_lost_expiry_counts_each_reading_once(tmp_path: Path) -> None:
    clock = Clock()
    a = agent(tmp_path, clock, max_age_s=60)
    await feed(a, clock, 50)
    clock.wall += 58_000
    clock.mono += 58_000
    a.expire()  # drops the oldest, in the pending transaction
    disk_full(a, True)
    n = until_down(a, clock)  # rolled back
    a.expire()  # the periodic expiry while down: no exception, nothing counted twice
    disk_full(a, False)
    await wait_for(lambda: recovered(a))
    await asyncio.sleep(0)
    assert in_file(a)[1] + a.store.ledger.total() == 4 * (50 + n)
    a.store.close()


async def test_drop_newest_refusals_are_counted_even_when_the_file_cannot_be_written(
    tmp_path: Path,
) -> None:
    clock = Clock()
    a = agent(tmp_path, clock, max_bytes=4096, policy="drop_newest")
    await feed(a, clock, 100)  # at its bound: new readings are refused
    a.store.query("PRAGMA query_only=1")  # and the file cannot be written
    await feed(a, clock, 20)
    a.store.query("PRAGMA query_only=0")
    await wait_for(lambda: recovered(a))
    await asyncio.sleep(0)
    assert in_file(a)[1] + a.store.ledger.total() == 4 * 120
    a.store.close()
    again = SpoolStore(tmp_path / "spool.db")
    assert again.ledger.total() == 4 * 120 - again.totals.readings  # in the file too
    again.close()


async def test_refusals_while_down_reach_the_file_though_a_transaction_was_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "UNSAVED_MAX_BYTES", 2000)
    clock = Clock()
    a = agent(tmp_path, clock)
    await feed(a, clock, 10)
    disk_full(a, True)
    until_down(a, clock)
    await asyncio.sleep(0)  # the flush queued before the failure runs (and fails)
    a.on_alert(alert("a1"))  # a write while down opens a transaction
    await feed(a, clock, 300)  # refused past the memory bound
    refused = a.store.ledger.per_reason()["spool_error"]
    disk_full(a, False)
    await wait_for(lambda: recovered(a))
    await asyncio.sleep(0)
    a.store.close()
    again = SpoolStore(tmp_path / "spool.db")
    assert again.ledger.per_reason() == {"spool_error": refused}
    again.close()


async def test_a_clock_step_while_down_keeps_the_ages_it_had(tmp_path: Path) -> None:
    clock = Clock()
    a = agent(tmp_path, clock, max_age_s=3600)
    await feed(a, clock, 50)
    disk_full(a, True)
    n = until_down(a, clock)
    await feed(a, clock, 100)
    clock.wall += 31 * 86_400_000  # a bogus step forward, seen while down...
    poll(a, clock)
    await asyncio.sleep(0.3)  # ...and the retries that roll it back
    disk_full(a, False)
    await wait_for(lambda: recovered(a))
    await asyncio.sleep(0)
    clock.wall -= 31 * 86_400_000  # corrected, no time passed
    a.expire()
    await asyncio.sleep(0)
    assert a.store.ledger.total() == 0
    assert in_file(a)[1] == 4 * (50 + n + 101)
    a.store.close()


async def test_corruption_found_while_down_leaves_retries_working(tmp_path: Path) -> None:
    clock = Clock()
    a = agent(tmp_path, clock)
    await feed(a, clock, 400)
    disk_full(a, True)
    until_down(a, clock)
    damage(a)
    a.expire()  # the corruption is found while down: a fresh file
    assert a.corrupt_at_runtime == 1
    assert not a.spool_down
    await asyncio.sleep(0.3)  # a retry timer of the old file must not linger
    disk_full(a, True)  # the fresh file's disk fills too...
    while not a.spool_down:
        await feed(a, clock, 1)
    disk_full(a, False)  # ...and frees again
    await wait_for(lambda: recovered(a), 5)
    await feed(a, clock, 1)
    assert a.snapshot().spool.writable
    a.store.close()
