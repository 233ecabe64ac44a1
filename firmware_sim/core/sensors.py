"""Sensors: what a device reports about a true quantity, faults included.

A sample is ``true x scale + offset + noise``, with any active fault applied, clamped to the
sensor's range and quantised to its resolution. The noise draw is taken for every sample,
faulty or not, and spikes draw from their own stream, so an injected fault changes the data
inside its window and nowhere else. Faults:

* flatline: the first value inside the window is held exactly (a stuck sensor);
* drift: ``rate_per_h`` x hours since the fault began is added;
* spikes: with ``probability`` per sample, +-``magnitude`` is added;
* dropout: no value at all (quality comm failure).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_sim.core.calendar import HOUR_MS
from firmware_sim.core.streams import NormalDraws, UniformDraws
from firmware_sim.scenario.model import FaultKind, SignalSpec
from shared.messages import Quality

#: The true physical value the sensor observes, at a time.
Probe = Callable[[int], float]


@dataclass(frozen=True, slots=True)
class Sample:
    signal: str
    ts: int  # ms since the epoch, simulated time
    value: float | None  # None only when quality is not GOOD
    quality: Quality


@dataclass(slots=True)
class _Fault:
    kind: FaultKind
    start_ms: int
    rate_per_h: float = 0.0
    probability: float = 0.0
    magnitude: float = 0.0
    held: list[float] = field(default_factory=list)  # flatline: the stuck value once known


def quantise(value: float, resolution: float) -> float:
    if resolution <= 0:
        return value
    # Round twice: to the grid, then away the binary fraction noise of the product.
    return round(round(value / resolution) * resolution, 9)


class Sensor:
    def __init__(
        self, spec: SignalSpec, probe: Probe, noise: NormalDraws, spikes: UniformDraws
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.period_ms = max(1, round(spec.period_s * 1000))
        self._probe = probe
        self._noise = noise
        self._spikes = spikes
        self._faults: dict[str, _Fault] = {}
        self.latest: Sample | None = None

    def start_fault(
        self,
        fault_id: str,
        kind: FaultKind,
        t_ms: int,
        *,
        rate_per_h: float = 0.0,
        probability: float = 0.0,
        magnitude: float = 0.0,
    ) -> None:
        self._faults[fault_id] = _Fault(kind, t_ms, rate_per_h, probability, magnitude)

    def end_fault(self, fault_id: str) -> None:
        self._faults.pop(fault_id, None)

    def true_value(self, t_ms: int) -> float:
        return self._probe(t_ms) * self.spec.scale + self.spec.offset

    def sample(self, t_ms: int) -> Sample:
        spec = self.spec
        value = self.true_value(t_ms) + spec.noise * self._noise.next()
        dropout = False
        held: list[float] | None = None
        for f in self._faults.values():
            if f.kind is FaultKind.DRIFT:
                value += f.rate_per_h * (t_ms - f.start_ms) / HOUR_MS
            elif f.kind is FaultKind.SPIKES:
                if self._spikes.next() < f.probability:
                    value += f.magnitude if self._spikes.next() < 0.5 else -f.magnitude
            elif f.kind is FaultKind.DROPOUT:
                dropout = True
            elif f.kind is FaultKind.FLATLINE:
                held = f.held
        if spec.minimum is not None:
            value = max(value, spec.minimum)
        if spec.maximum is not None:
            value = min(value, spec.maximum)
        value = quantise(value, spec.resolution)
        if held is not None:
            if not held:
                held.append(value)
            value = held[0]
        if dropout:
            sample = Sample(self.id, t_ms, None, Quality.COMM_FAILURE)
        else:
            sample = Sample(self.id, t_ms, value, Quality.GOOD)
        self.latest = sample
        return sample
