"""A production line in continuous time: shifts, planned stops, failures, scrap and PLC counters.

The line runs when it is on shift, not in a planned stop, not failed or stopped, and has an
open production order; then it completes one piece per cycle (``3600 / rate_per_h`` s, in
integer milliseconds, so splitting an interval never changes the count). Whether a piece is
scrap is decided per piece index from the line's own stream, so the same pieces are scrap
however often the line is observed. Failures come after an exponential amount of *running*
time (``mtbf_h``) and take an exponential repair time (``mttr_min``).

Between two of its events (a shift boundary, a failure, a finished lot or order) nothing
changes but the fluid progress, which :meth:`ProductionLine.advance` integrates exactly; the
world asks :meth:`next_event` when to wake it. PLC counters count good and scrap pieces
modulo ``2**counter_bits`` and can be reset to zero, as real ones are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np

from firmware_sim.core.calendar import HOUR_MS, MINUTE_MS, WeeklyCalendar
from firmware_sim.core.orders import OrderBook, ProductionOrder
from firmware_sim.scenario.model import LineSpec

_FLAG_BLOCK: Final = 4096


class LineState(StrEnum):
    IDLE = "idle"  # off shift, or on shift with no open order
    RUNNING = "running"
    PLANNED_DOWN = "planned_down"  # a planned stop (break, maintenance)
    DOWN = "down"  # a failure or an injected stoppage


STATE_CODES: Final = {
    LineState.IDLE: 0,
    LineState.RUNNING: 1,
    LineState.PLANNED_DOWN: 2,
    LineState.DOWN: 3,
}

OutputHook = Callable[[int, str, int], None]  # (t_ms, sku, good pieces moved to the warehouse)
DowntimeHook = Callable[[int, int], None]  # (start_ms, end_ms) of a failure


class ScrapFlags:
    """Scrap yes/no per piece index, drawn in blocks; only indices ahead are kept."""

    def __init__(self, rng: np.random.Generator, rate: float) -> None:
        self._rng = rng
        self._rate = rate
        self._flags: list[bool] = []
        self._first = 0  # piece index of _flags[0]

    def _ensure(self, index: int) -> None:
        while index >= self._first + len(self._flags):
            self._flags.extend((self._rng.random(_FLAG_BLOCK) < self._rate).tolist())

    def is_scrap(self, index: int) -> bool:
        if self._rate == 0:
            return False
        self._ensure(index)
        return self._flags[index - self._first]

    def forget_before(self, index: int) -> None:
        drop = index - self._first
        if drop >= _FLAG_BLOCK:
            del self._flags[:drop]
            self._first = index

    def pieces_for_good(self, start: int, good: int) -> int:
        """How many pieces from index ``start`` on it takes to make ``good`` good ones."""
        if self._rate == 0:
            return good
        n = made = 0
        while made < good:
            if not self.is_scrap(start + n):
                made += 1
            n += 1
        return n


@dataclass(frozen=True, slots=True)
class LineSnapshot:
    id: str
    t_ms: int
    state: LineState
    reason: str  # off_shift | no_order | planned_stop | failure | stoppage | "" when running
    sku: str | None
    order: str | None
    rate_per_h: float  # nominal rate while running, else 0
    good_total: int  # since the start of the run, never reset
    scrap_total: int
    good_counter: int  # the PLC counters: modulo 2**counter_bits, resettable
    scrap_counter: int
    counter_bits: int
    temperature_c: float  # true equipment temperature (sensors add noise)
    vibration: float  # true vibration velocity RMS, mm/s


class ProductionLine:
    def __init__(
        self,
        spec: LineSpec,
        *,
        failures: np.random.Generator,
        scrap: np.random.Generator,
        start_ms: int,
        orders: OrderBook,
        on_output: OutputHook,
        on_failure: DowntimeHook,
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.shifts = WeeklyCalendar(spec.shifts)
        self.stops = WeeklyCalendar(spec.planned_stops)
        self.cycle_ms = {p.sku: max(1, round(HOUR_MS / p.rate_per_h)) for p in spec.products}
        self.rates = {p.sku: p.rate_per_h for p in spec.products}
        self._failures = failures
        self._flags = ScrapFlags(scrap, spec.scrap_rate)
        self._orders = orders
        self._on_output = on_output
        self._on_failure = on_failure
        self._modulus: int = 1 << spec.counter_bits
        self.t = start_ms
        self.progress_ms = 0
        self.pieces = 0
        self.good_total = self.scrap_total = 0
        self.good_base = self.scrap_base = 0
        self.good_by_sku = {p.sku: 0 for p in spec.products}
        self.scrap_by_sku = {p.sku: 0 for p in spec.products}
        self.pending = 0  # good pieces not yet moved to the warehouse
        self.pending_sku: str | None = None
        self.failed_until: int | None = None
        self.stoppages = 0
        self.run_to_failure = self._time_to_failure()
        self.state, self.reason = LineState.IDLE, "off_shift"
        self._anchor_t, self._anchor_c, self._target_c = start_ms, spec.ambient_c, spec.ambient_c
        self.evaluate(start_ms)

    def _time_to_failure(self) -> int:
        if self.spec.mtbf_h <= 0:
            return 2**62
        return max(1, round(float(self._failures.exponential(self.spec.mtbf_h * HOUR_MS))))

    def _repair_time(self) -> int:
        return max(
            MINUTE_MS, round(float(self._failures.exponential(self.spec.mttr_min * MINUTE_MS)))
        )

    # --- fluid progress between events -------------------------------------------------
    def advance(self, t_ms: int) -> None:
        """Integrate production up to ``t_ms``; the caller guarantees no event lies between."""
        dt = t_ms - self.t
        if dt <= 0:
            return
        order = self._orders.current(self.id) if self.state is LineState.RUNNING else None
        if order is not None:
            self.run_to_failure -= dt
            cycle = self.cycle_ms[order.sku]
            total = self.progress_ms + dt
            first_piece_ms = self.t + cycle - self.progress_ms
            self.progress_ms = total % cycle
            if n := total // cycle:
                self._produce(order, n, first_piece_ms)
        self.t = t_ms

    def _produce(self, order: ProductionOrder, n: int, first_piece_ms: int) -> None:
        scrap = sum(self._flags.is_scrap(i) for i in range(self.pieces, self.pieces + n))
        self.pieces += n
        self._flags.forget_before(self.pieces)
        good = n - scrap
        self.good_total += good
        self.scrap_total += scrap
        self.good_by_sku[order.sku] += good
        self.scrap_by_sku[order.sku] += scrap
        self.pending += good
        self.pending_sku = order.sku
        self._orders.record(order, first_piece_ms, good=good, scrap=scrap)

    # --- events --------------------------------------------------------------------------
    def next_event(self) -> int | None:
        """When the line must next be woken (from its own time ``t``), or ``None``."""
        t = self.t
        times = [c for c in (self.shifts.next_change(t), self.stops.next_change(t)) if c]
        if self.failed_until is not None:
            times.append(self.failed_until)
        order = self._orders.current(self.id)
        if self.state is LineState.RUNNING and order is not None:
            if self.spec.mtbf_h > 0:
                times.append(t + max(0, self.run_to_failure))
            need = min(order.remaining, self.spec.lot_size - self.pending) or 1
            n = self._flags.pieces_for_good(self.pieces, need)
            times.append(t + n * self.cycle_ms[order.sku] - self.progress_ms)
        return min(times) if times else None

    def wake(self, t_ms: int) -> None:
        """Handle whatever is due at ``t_ms``: lots, finished orders, failures, boundaries."""
        self.advance(t_ms)
        order = self._orders.current(self.id)
        if order is not None and order.remaining == 0:
            self._transfer(t_ms)
            self._orders.complete(order, t_ms)
        if self.pending >= self.spec.lot_size:
            self._transfer(t_ms)
        if self.failed_until is not None and t_ms >= self.failed_until:
            self.failed_until = None
        if self.state is LineState.RUNNING and self.run_to_failure <= 0:
            self.failed_until = t_ms + self._repair_time()
            self.run_to_failure = self._time_to_failure()
            self._on_failure(t_ms, self.failed_until)
        self.evaluate(t_ms)

    def _transfer(self, t_ms: int) -> None:
        if self.pending and self.pending_sku is not None:
            self._on_output(t_ms, self.pending_sku, self.pending)
        self.pending = 0

    def set_stoppage(self, t_ms: int, active: bool) -> None:
        self.advance(t_ms)
        self.stoppages += 1 if active else -1
        self.evaluate(t_ms)

    def reset_counters(self, t_ms: int) -> None:
        self.advance(t_ms)
        self.good_base, self.scrap_base = self.good_total, self.scrap_total

    def evaluate(self, t_ms: int) -> None:
        """Recompute the state at ``t_ms`` (after any change)."""
        self.advance(t_ms)
        if self.stoppages > 0:
            state, reason = LineState.DOWN, "stoppage"
        elif self.failed_until is not None:
            state, reason = LineState.DOWN, "failure"
        elif not self.shifts.active(t_ms):
            state, reason = LineState.IDLE, "off_shift"
        elif self.stops.active(t_ms):
            state, reason = LineState.PLANNED_DOWN, "planned_stop"
        elif self._orders.current(self.id) is None:
            state, reason = LineState.IDLE, "no_order"
        else:
            state, reason = LineState.RUNNING, ""
        if state is not self.state:
            self._anchor_c, self._anchor_t = self.temperature(t_ms), t_ms
            spec = self.spec
            self._target_c = spec.running_c if state is LineState.RUNNING else spec.ambient_c
        self.state, self.reason = state, reason

    # --- observation ---------------------------------------------------------------------
    def temperature(self, t_ms: int) -> float:
        """First-order lag toward the running or ambient temperature, from the last change."""
        tau = self.spec.thermal_tau_min * MINUTE_MS
        decay = math.exp(-(t_ms - self._anchor_t) / tau)
        return self._target_c + (self._anchor_c - self._target_c) * decay

    def vibration(self) -> float:
        running = self.state is LineState.RUNNING
        return self.spec.vibration_running if running else self.spec.vibration_idle

    @property
    def good_counter(self) -> int:
        return (self.good_total - self.good_base) % self._modulus

    @property
    def scrap_counter(self) -> int:
        return (self.scrap_total - self.scrap_base) % self._modulus

    def snapshot(self) -> LineSnapshot:
        order = self._orders.current(self.id)
        running = self.state is LineState.RUNNING and order is not None
        return LineSnapshot(
            id=self.id,
            t_ms=self.t,
            state=self.state,
            reason=self.reason,
            sku=order.sku if order else None,
            order=order.id if order else None,
            rate_per_h=self.rates[order.sku] if running and order else 0.0,
            good_total=self.good_total,
            scrap_total=self.scrap_total,
            good_counter=self.good_counter,
            scrap_counter=self.scrap_counter,
            counter_bits=self.spec.counter_bits,
            temperature_c=self.temperature(self.t),
            vibration=self.vibration(),
        )
