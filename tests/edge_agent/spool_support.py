"""The agent's data path into a real SQLite spool, without a broker: shared by the spool tests.

A settable clock stands in for time (the agent takes its clock as a parameter), readings are
handed to ``Agent.ingest`` as a poller would, and a full disk is SQLite's own ``SQLITE_FULL``
(``max_page_count``), not a fake.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from edge_agent.agent import Agent
from edge_agent.config import config_from_mapping
from edge_agent.spool.store import SpoolStore
from shared.messages import Alert, AlertState, Quality, Reading, Severity

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


def damage(a: Agent) -> int:
    """Overwrite every page of the spool file but the first (the header); returns its size."""
    a.store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    a.store.query("PRAGMA cache_size=1")  # every read goes to the file
    path = a.store.path
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(size - 4096))
    return size


async def wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def disk_full(a: Agent, full: bool) -> None:
    """A real SQLITE_FULL: the file may not grow past the pages it has (per connection)."""
    if full:
        (pages,) = a.store.query("PRAGMA page_count")[0]
        a.store.query(f"PRAGMA max_page_count={pages}")
    else:
        a.store.query("PRAGMA max_page_count=1073741823")


def alert(alert_id: str) -> Alert:
    return Alert(
        id=alert_id,
        rule="stockout-risk",
        severity=Severity.CRITICAL,
        state=AlertState.ACTIVE,
        subject="A-113",
        title="A-113 runs out in 20 h",
        raised=T0,
        updated=T0,
    )
