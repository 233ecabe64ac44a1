"""Pure batching state machine: readings in, numbered telemetry batches out.

No clock and no I/O: the caller passes the time in (milliseconds of a *monotonic* clock, so a
wall-clock step cannot hold a batch back or flush it early). A batch is closed when it holds
``max_readings`` or when its first reading is ``max_age_ms`` old; every batch gets the next
``seq`` of this boot (1, 2, 3, ... with no gaps; the contract starts at 1) **when it opens**,
so the agent can make the open batch durable under its final seq at every poll (a reading is
committed to the spool long before its batch is full).

Two lanes: live readings, and ``historical`` ones (a CSV back-fill), which must travel in
batches flagged historical so they never raise live alerts. Each lane has at most one open
batch. Readings come out exactly once, in the order they went in (per lane).

A batch is also closed before it could pass what the cloud accepts (``shared.codec``:
``MAX_READINGS``, and ``MAX_PAYLOAD_BYTES`` counted as the largest envelope plus each
reading's encoding): a batch the cloud refused as a whole would lose all its readings to the
dead letters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.codec import ENVELOPE_MAX_BYTES, MAX_PAYLOAD_BYTES, MAX_READINGS, reading_size
from shared.messages import Reading, TelemetryBatch


@dataclass(slots=True)
class _Lane:
    historical: bool
    seq: int | None = None  # seq of the open batch
    readings: list[Reading] = field(default_factory=list)
    size: int = ENVELOPE_MAX_BYTES - 1  # bound on the open batch's encoded size
    opened_ms: int | None = None  # when the first pending reading arrived
    clock_step_ms: int = 0  # largest wall-clock step seen since the last batch of this lane


@dataclass(frozen=True, slots=True)
class OpenBatch:
    """A batch still collecting readings: what the spool persists at every poll."""

    seq: int
    historical: bool
    readings: tuple[Reading, ...]
    clock_step_ms: int


class Batcher:
    """Collects readings into :class:`TelemetryBatch` messages for one gateway boot."""

    def __init__(
        self,
        *,
        gateway: str,
        boot: str,
        max_readings: int,
        max_age_ms: int,
        first_seq: int = 1,
    ) -> None:
        if first_seq < 1:
            raise ValueError(f"first_seq must be >= 1, got {first_seq}")
        self.gateway = gateway
        self.boot = boot
        self.max_readings = 1
        self.max_age_ms = 0
        self.configure(max_readings=max_readings, max_age_ms=max_age_ms)
        self._next_seq = first_seq
        self._lanes = (_Lane(historical=False), _Lane(historical=True))

    def configure(self, *, max_readings: int, max_age_ms: int) -> None:
        """Change the limits (a config reload); open batches keep their readings and seq."""
        if max_readings < 1:
            raise ValueError(f"max_readings must be >= 1, got {max_readings}")
        if max_age_ms < 0:
            raise ValueError(f"max_age_ms must be >= 0, got {max_age_ms}")
        self.max_readings = max_readings
        self.max_age_ms = max_age_ms

    @property
    def next_seq(self) -> int:
        """The ``seq`` of the live open batch, or the one the next batch to open will get."""
        live = self._lanes[0]
        return live.seq if live.seq is not None else self._next_seq

    @property
    def last_seq(self) -> int:
        """The highest seq handed out so far (0: none)."""
        return self._next_seq - 1

    @property
    def pending(self) -> int:
        """Readings collected and not yet in a closed batch."""
        return sum(len(lane.readings) for lane in self._lanes)

    def due_ms(self) -> int | None:
        """When the earliest open batch becomes due by age (None: nothing pending)."""
        opened = [lane.opened_ms for lane in self._lanes if lane.opened_ms is not None]
        return min(opened) + self.max_age_ms if opened else None

    def note_clock_step(self, step_ms: int) -> None:
        """Record a step of the gateway's wall clock; the next batches report the largest."""
        for lane in self._lanes:
            lane.clock_step_ms = max(lane.clock_step_ms, abs(step_ms))

    def open_batches(self) -> list[OpenBatch]:
        return [
            OpenBatch(lane.seq, lane.historical, tuple(lane.readings), lane.clock_step_ms)
            for lane in self._lanes
            if lane.seq is not None and lane.readings
        ]

    def add(
        self, readings: Iterable[Reading], now_ms: int, *, historical: bool = False
    ) -> list[TelemetryBatch]:
        """Add readings; return the batches this closes (by age first, then by size)."""
        out = self.poll(now_ms)
        lane = self._lanes[1 if historical else 0]
        max_readings = min(self.max_readings, MAX_READINGS)
        for reading in readings:
            size = reading_size(reading) + 1  # and a comma (exact but for the first reading)
            if lane.readings and lane.size + size > MAX_PAYLOAD_BYTES:
                out.append(self._close(lane))  # the cloud would refuse it whole
            if lane.seq is None:
                lane.seq = self._next_seq
                self._next_seq += 1
                lane.opened_ms = now_ms
            lane.readings.append(reading)
            lane.size += size
            if len(lane.readings) >= max_readings:
                out.append(self._close(lane))
        return out

    def poll(self, now_ms: int) -> list[TelemetryBatch]:
        """The open batches that are due by age at ``now_ms``."""
        return [
            self._close(lane)
            for lane in self._lanes
            if lane.opened_ms is not None and now_ms >= lane.opened_ms + self.max_age_ms
        ]

    def flush(self) -> list[TelemetryBatch]:
        """Every open batch, closed now whatever its age."""
        return [self._close(lane) for lane in self._lanes if lane.readings]

    def _close(self, lane: _Lane) -> TelemetryBatch:
        assert lane.seq is not None
        batch = TelemetryBatch(
            gateway=self.gateway,
            boot=self.boot,
            seq=lane.seq,
            readings=lane.readings,
            historical=lane.historical,
            clock_step_ms=lane.clock_step_ms,
        )
        lane.seq = None
        lane.readings = []
        lane.size = ENVELOPE_MAX_BYTES - 1
        lane.opened_ms = None
        lane.clock_step_ms = 0
        return batch
