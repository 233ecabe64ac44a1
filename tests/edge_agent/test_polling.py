"""The poller's own contract: a failure downstream of a source never stops that source.

The source here is a stand-in (what it reads does not matter); the subject is the poller.
"""

from __future__ import annotations

import asyncio
import time

from edge_agent.config import config_from_mapping
from edge_agent.polling import Poller
from shared.messages import Quality, Reading


class WallClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


class CountingSource:
    def __init__(self) -> None:
        self.reads = 0

    async def read(self, now_ms: int) -> list[Reading]:
        self.reads += 1
        return [Reading("s0", now_ms, float(self.reads), Quality.GOOD)]

    async def close(self) -> None:
        return None


async def test_a_sink_that_raises_does_not_stop_the_poller() -> None:
    cfg = config_from_mapping(
        {
            "site": "p",
            "gateway": "gw",
            "status": {"enabled": False},
            "sources": [{"type": "modbus", "id": "plc1", "host": "127.0.0.1"}],
            "signals": [
                {"id": "s0", "source": "plc1", "address": 0, "kind": "sensor", "period_s": 0.02}
            ],
        },
        use_env=False,
    )
    delivered: list[float] = []

    def sink(_poller: Poller, readings: list[Reading]) -> None:
        if not delivered:
            delivered.append(-1.0)
            raise RuntimeError("disk on fire")
        delivered.extend(r.value for r in readings if r.value is not None)

    poller = Poller(
        cfg.sources[0],
        cfg.signals_of("plc1"),
        clock=WallClock(),
        sink=sink,
        source=CountingSource(),
    )
    poller.start()
    for _ in range(200):
        await asyncio.sleep(0.02)
        if len(delivered) >= 4:
            break
    await poller.stop()
    assert delivered[:3] == [-1.0, 2.0, 3.0]  # the read after the failure, and on
    assert poller.health.exceptions == 1
    assert poller.health.last_error == "RuntimeError: disk on fire"
