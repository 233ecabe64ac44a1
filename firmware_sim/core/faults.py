"""Injected faults on the absolute timeline: the scenario's fixed ones and random ones.

A scenario places faults relative to the start of the run; :func:`scheduled` turns them into
:class:`Fault` windows. Random faults are drawn a week at a time from their own stream (count
Poisson(``per_week``), start uniform in the week, duration uniform in the range, target
uniform among the targets), so a long backfill gets many labelled faults and a live run gets
the same ones for the same seed. Each fault becomes one ``fault`` ground-truth record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim.core.calendar import WEEK_MS
from firmware_sim.core.truth import Record
from firmware_sim.scenario.model import FaultKind, FaultParams, FaultSpec, RandomFaultSpec


@dataclass(frozen=True, slots=True)
class Fault:
    id: str
    kind: FaultKind
    target: str
    start_ms: int
    end_ms: int  # == start_ms for instant faults
    params: FaultParams
    warehouse: str | None = None
    random: bool = False

    def record(self) -> Record:
        rec: Record = {
            "type": "fault",
            "id": self.id,
            "kind": self.kind.value,
            "target": self.target,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "random": self.random,
        }
        p = self.params
        if self.kind is FaultKind.DRIFT:
            rec["rate_per_h"] = p.rate_per_h
        elif self.kind is FaultKind.SPIKES:
            rec["probability"], rec["magnitude"] = p.probability, p.magnitude
        elif self.kind is FaultKind.CLOCK_JUMP:
            rec["offset_ms"] = p.offset_ms
        elif self.kind is FaultKind.DEMAND_SURGE:
            rec["multiplier"] = p.multiplier
            if self.warehouse is not None:
                rec["warehouse"] = self.warehouse
        return rec


def scheduled(specs: tuple[FaultSpec, ...], start_ms: int) -> list[Fault]:
    return [
        Fault(
            id=f"f{i}",
            kind=s.kind,
            target=s.target,
            start_ms=start_ms + s.at_ms,
            end_ms=start_ms + s.at_ms + s.duration_ms,
            params=s.params,
            warehouse=s.warehouse,
        )
        for i, s in enumerate(specs)
    ]


class RandomFaults:
    """Draws the random faults of one spec, week by week (call :meth:`week` in order)."""

    def __init__(self, index: int, spec: RandomFaultSpec, rng: np.random.Generator) -> None:
        self._index = index
        self._spec = spec
        self._rng = rng
        self._count = 0

    def week(self, week_ms: int, *, not_before: int) -> list[Fault]:
        spec, rng = self._spec, self._rng
        n = int(rng.poisson(spec.per_week))
        starts = rng.integers(week_ms, week_ms + WEEK_MS, n).tolist()
        lo, hi = spec.duration_ms
        durations = rng.integers(lo, hi + 1, n).tolist() if hi > lo else [lo] * n
        targets = rng.integers(0, len(spec.targets), n).tolist()
        out = []
        for start, duration, target in sorted(zip(starts, durations, targets, strict=True)):
            self._count += 1
            if start < not_before:
                continue
            out.append(
                Fault(
                    id=f"r{self._index}-{self._count}",
                    kind=spec.kind,
                    target=spec.targets[target],
                    start_ms=start,
                    end_ms=start + duration,
                    params=spec.params,
                    random=True,
                )
            )
        return out
