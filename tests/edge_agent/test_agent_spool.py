"""The agent's data path into the spool, without a broker: policies, expiry, corruption.

A real :class:`Agent` with a real SQLite spool; readings are handed to ``Agent.ingest`` as a
poller would, and a settable clock stands in for time (the agent takes its clock as a
parameter), so ages and expiry need no waiting.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from edge_agent.agent import Agent
from edge_agent.config import config_from_mapping
from edge_agent.spool.store import SpoolStore
from shared.messages import Quality, Reading

T0 = 1_790_000_000_000


class Clock:
    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1_000

    def wall_ms(self) -> int:
        return self.wall

    def mono_ms(self) -> int:
        return self.mono


class Poller:
    historical = False


def agent(tmp_path: Path, clock: Clock, **spool: Any) -> Agent:
    cfg = config_from_mapping(
        {
            "site": "p",
            "gateway": "gw",
            "batching": {"max_readings": 10, "max_age_s": 60},
            "spool": {"path": str(tmp_path / "spool.db"), **spool},
            "status": {"enabled": False},
            "sources": [{"type": "modbus", "id": "plc1", "host": "127.0.0.1"}],
            "signals": [
                {"id": f"s{i}", "source": "plc1", "address": i, "kind": "sensor"} for i in range(4)
            ],
        },
        use_env=False,
    )
    return Agent(cfg, store=SpoolStore(cfg.spool_path), boot="b1", started_ms=T0, clock=clock)


async def feed(a: Agent, clock: Clock, polls: int) -> None:
    for _ in range(polls):
        clock.wall += 100
        clock.mono += 100
        a.ingest(Poller(), [Reading(f"s{i}", clock.wall, 1.5, Quality.GOOD) for i in range(4)])  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the flush (COMMIT) runs on the next loop turn


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
    a.store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    a.store.query("PRAGMA cache_size=1")  # every read goes to the file
    path = a.store.path
    size = path.stat().st_size
    with path.open("r+b") as f:  # damage every page but the first (the header)
        f.seek(4096)
        f.write(os.urandom(size - 4096))
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
