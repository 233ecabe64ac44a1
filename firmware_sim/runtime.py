"""A running simulation: one world, one clock, shared by every protocol server of a process.

Servers never step the world themselves: they call :meth:`Simulation.sync`, which advances the
world to the clock's "now". Because the world's state at a time does not depend on how often
it is advanced, a Modbus read, an OPC UA update and an MES request made at the same moment see
the same plant, whatever the speed of the clock.
"""

from __future__ import annotations

from pathlib import Path

from firmware_sim.clock import Clock, SimClock
from firmware_sim.core.truth import JsonLinesWriter, Truth
from firmware_sim.core.world import World
from firmware_sim.scenario.model import Scenario

#: At most this many samples per signal per *real* second when time is accelerated (the
#: sensor period is stretched to ``speed / MAX_SAMPLES_PER_S`` simulated seconds if shorter).
MAX_SAMPLES_PER_S = 20.0


class Simulation:
    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        sample_floor_s: float | None = None,
        truth_path: str | Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.clock: Clock = clock if clock is not None else SimClock()
        if sample_floor_s is None:
            sample_floor_s = self.clock.speed / MAX_SAMPLES_PER_S if self.clock.speed > 1 else 0.0
        self.sample_floor_s = sample_floor_s
        truth = Truth(keep=truth_path is None)
        self._writer: JsonLinesWriter | None = None
        if truth_path is not None:
            self._writer = JsonLinesWriter(truth_path)
            truth.add_sink(self._writer)
        start = self.clock.start_ms  # not now(): an accelerated clock has moved on already
        self.world = World(
            scenario,
            seed=seed,
            start_ms=start - start % 1000,
            sample_floor_s=sample_floor_s,
            truth=truth,
        )

    @property
    def speed(self) -> float:
        return self.clock.speed

    def sync(self) -> int:
        """Advance the world to the clock's now; returns that simulated time (ms)."""
        self.world.advance_to(self.clock.now_ms())
        return self.world.t

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
