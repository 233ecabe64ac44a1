"""Pure batching state machine: readings in, numbered telemetry batches out.

No clock and no I/O: the caller passes the time in (milliseconds of a *monotonic* clock, so a
wall-clock step cannot hold a batch back or flush it early). A batch is emitted when it holds
``max_readings`` or when its first reading is ``max_age_ms`` old; every batch gets the next
``seq`` of this boot (1, 2, 3, ... with no gaps; the contract starts at 1), so the cloud can
ack ranges and see losses.
Readings come out exactly once, in the order they went in.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.messages import Reading, TelemetryBatch


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
        if max_readings < 1:
            raise ValueError(f"max_readings must be >= 1, got {max_readings}")
        if max_age_ms < 0:
            raise ValueError(f"max_age_ms must be >= 0, got {max_age_ms}")
        if first_seq < 1:
            raise ValueError(f"first_seq must be >= 1, got {first_seq}")
        self.gateway = gateway
        self.boot = boot
        self.max_readings = max_readings
        self.max_age_ms = max_age_ms
        self._next_seq = first_seq
        self._pending: list[Reading] = []
        self._opened_ms: int | None = None  # when the first pending reading arrived
        self._clock_step_ms = 0  # largest wall-clock step seen since the last batch

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next emitted batch will carry."""
        return self._next_seq

    @property
    def pending(self) -> int:
        """Readings collected and not yet emitted."""
        return len(self._pending)

    def due_ms(self) -> int | None:
        """When the pending readings become due by age (None: nothing pending)."""
        if self._opened_ms is None:
            return None
        return self._opened_ms + self.max_age_ms

    def note_clock_step(self, step_ms: int) -> None:
        """Record a step of the gateway's wall clock; the next batch reports the largest."""
        self._clock_step_ms = max(self._clock_step_ms, abs(step_ms))

    def add(self, readings: Iterable[Reading], now_ms: int) -> list[TelemetryBatch]:
        """Add readings; return the batches this completes (by age first, then by size)."""
        out: list[TelemetryBatch] = []
        aged = self.poll(now_ms)
        if aged is not None:
            out.append(aged)
        for reading in readings:
            if self._opened_ms is None:
                self._opened_ms = now_ms
            self._pending.append(reading)
            if len(self._pending) >= self.max_readings:
                out.append(self._emit())
        return out

    def poll(self, now_ms: int) -> TelemetryBatch | None:
        """The pending batch if it is due by age, else None."""
        due = self.due_ms()
        if due is None or now_ms < due:
            return None
        return self._emit()

    def flush(self) -> TelemetryBatch | None:
        """The pending readings as a batch now, whatever their age (None: nothing pending)."""
        if not self._pending:
            return None
        return self._emit()

    def _emit(self) -> TelemetryBatch:
        batch = TelemetryBatch(
            gateway=self.gateway,
            boot=self.boot,
            seq=self._next_seq,
            readings=self._pending,
            clock_step_ms=self._clock_step_ms,
        )
        self._next_seq += 1
        self._pending = []
        self._opened_ms = None
        self._clock_step_ms = 0
        return batch
