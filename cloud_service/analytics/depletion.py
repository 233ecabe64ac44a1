"""Stock depletion for one (site, SKU): from a stock-level series to dates and a reorder.

The kernel (:mod:`.kernels.depletion`) works on a regular grid of periods; this module puts
readings taken "at any sampling rate" on that grid (the last reading of each period, carried
forward over empty periods), runs it, and turns periods back into timestamps. Every assumption
made about the input is recorded in ``notes`` so the CLI can state it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from cloud_service.analytics.codes import DemandClass, Model
from cloud_service.analytics.kernels import depletion as kd

HOUR_MS = 3_600_000
DEFAULT_HORIZON_H = 2160  # 90 days
DEFAULT_REVIEW_H = 24.0
DEFAULT_BUCKET_H = 24.0  # demand is modelled on daily sums
DEFAULT_SERVICE = 0.95
MIN_PERIODS = 3
MAX_PERIODS = 87_600  # ten years of hours: a longer grid is a wrong timestamp, not a history


@dataclass(frozen=True, slots=True)
class Receipt:
    """A scheduled receipt (purchase order, production output) expected at ``ts_ms``."""

    ts_ms: int
    qty: float


@dataclass(frozen=True, slots=True)
class Production:
    """Known production output into this stock point (the line that refills it), as read.

    ``counter=True`` (default): ``values`` are a cumulative good-pieces counter as the PLC
    shows it; a decrease is a rollover when ``counter_bits`` is given and wrapping explains it
    within half the counter's range, else a reset (counting again from zero). ``counter=False``:
    ``values`` are quantities produced, each in the period of its timestamp.
    """

    ts_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    counter: bool = True
    counter_bits: int | None = None

    def increments(self) -> npt.NDArray[np.float64]:
        """What was produced up to each reading since the previous one (first: 0)."""
        v = np.asarray(self.values, dtype=np.float64)
        if not self.counter:
            return np.where(np.isfinite(v), v, 0.0)
        return counter_increments(v, self.counter_bits)


@dataclass(frozen=True, slots=True)
class PlannedOutput:
    """Scheduled production into this stock point: ``qty`` spread evenly over
    ``[start_ms, end_ms)`` (a plan period, or the hours a line is scheduled on it at its rate).
    """

    start_ms: int
    end_ms: int
    qty: float


def counter_increments(
    values: npt.NDArray[np.float64], bits: int | None = None
) -> npt.NDArray[np.float64]:
    """Per-reading increments of a cumulative counter (first reading and gaps: 0).

    A decrease is a rollover when ``bits`` is given and ``value + 2**bits - previous`` is at
    most half the range, else a device reset (the value is the count since the reset); with
    ``bits`` a rise of more than half the range is a glitch and not counted. Non-finite
    readings add nothing and do not move the reference (like the edge agent's counters).
    """
    v = np.asarray(values, dtype=np.float64)
    out = np.zeros(v.size)
    ok = np.flatnonzero(np.isfinite(v))
    if ok.size < 2:
        return out
    cur = v[ok[1:]]
    delta = cur - v[ok[:-1]]
    if bits is None:
        inc = np.where(delta >= 0, delta, cur)
    else:
        modulus = float(2**bits)
        half = modulus / 2
        wrapped = delta + modulus
        inc = np.where(delta >= 0, delta, np.where(wrapped <= half, wrapped, cur))
        inc = np.where(inc <= half, inc, 0.0)
    out[ok[1:]] = inc
    return out


@dataclass(slots=True)
class DepletionResult:
    as_of_ms: int  # the end of the last period with a reading
    stock: float
    rate_per_hour: float
    trend_per_hour: float
    demand_class: DemandClass
    model: Model
    noise: float  # RMS of level noise per period
    stockout_ms: tuple[int | None, int | None, int | None]  # P10, P50, P90; None: not in horizon
    safety_ms: tuple[int | None, int | None, int | None]
    reorder_by_ms: int | None
    reorder_qty: float
    notes: list[str] = field(default_factory=list)

    def hours_from(self, now_ms: int) -> dict[str, float | None]:
        """Stockout quantiles and the latest order date as hours from ``now_ms`` (what alert
        rules compare with lead times; ``None`` beyond the horizon; ``reorder_in_h <= 0``:
        order now)."""

        def h(ms: int | None) -> float | None:
            return None if ms is None else (ms - now_ms) / HOUR_MS

        return {
            "stockout_p10_h": h(self.stockout_ms[0]),
            "stockout_p50_h": h(self.stockout_ms[1]),
            "stockout_p90_h": h(self.stockout_ms[2]),
            "safety_stock_p50_h": h(self.safety_ms[1]),
            "reorder_in_h": h(self.reorder_by_ms),
            "reorder_qty": self.reorder_qty,
        }

    def as_record(self) -> dict[str, str | float]:
        """Flat record with ISO-8601 UTC timestamps (empty when beyond the horizon)."""
        return {
            "as_of": iso(self.as_of_ms),
            "stock": self.stock,
            "rate_per_hour": self.rate_per_hour,
            "demand_class": self.demand_class.name.lower(),
            "model": self.model.name.lower(),
            "stockout_p10": iso(self.stockout_ms[0]),
            "stockout_p50": iso(self.stockout_ms[1]),
            "stockout_p90": iso(self.stockout_ms[2]),
            "safety_stock_p10": iso(self.safety_ms[0]),
            "safety_stock_p50": iso(self.safety_ms[1]),
            "safety_stock_p90": iso(self.safety_ms[2]),
            "reorder_by": iso(self.reorder_by_ms),
            "reorder_qty": self.reorder_qty,
        }


def iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _when(ms: int) -> str:
    """:func:`iso`, or the epoch milliseconds when the date is beyond what datetime holds."""
    try:
        return iso(ms)
    except (ValueError, OverflowError, OSError):
        return f"epoch ms {ms}"


def to_grid(
    ts_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64], period_ms: int
) -> tuple[npt.NDArray[np.float64], int, list[str]]:
    """Last value per period from the first reading's period on; gaps carried forward.

    Returns ``(levels, end_ms, notes)`` where ``end_ms`` is the end of the last period.
    ``ts_ms`` must be sorted (callers check and say so). Raises :class:`ValueError` when the
    readings span more than ``MAX_PERIODS`` periods (one wild timestamp would otherwise ask
    for terabytes).
    """
    notes: list[str] = []
    start = ts_ms[0] // period_ms
    span = int(ts_ms[-1]) // period_ms - int(start) + 1
    if span > MAX_PERIODS:
        raise ValueError(
            f"the readings span {span:,} periods of {period_ms / 60_000:g} min "
            f"({_when(int(ts_ms[0]))} to {_when(int(ts_ms[-1]))}), more than the "
            f"{MAX_PERIODS:,} that can be analysed: check for a wrong timestamp, or analyse a "
            "shorter stretch"
        )
    idx = ts_ms // period_ms - start
    n = int(idx[-1]) + 1
    levels = np.full(n, np.nan)
    last = np.r_[idx[1:] != idx[:-1], True]  # the last reading of each period
    levels[idx[last]] = values[last]
    filled = np.isfinite(levels)
    missing = n - int(filled.sum())
    if missing:
        pos = np.where(filled, np.arange(n), 0)
        np.maximum.accumulate(pos, out=pos)
        levels = levels[pos]
        notes.append(
            f"{missing} of {n} periods had no reading: the previous level was carried forward"
        )
    per_period = ts_ms.size / n
    if per_period > 1.5:
        notes.append(f"{per_period:.1f} readings per period on average: the last one is used")
    return levels, int((start + n) * period_ms), notes


def analyze(
    ts_ms: npt.NDArray[np.int64],
    stock: npt.NDArray[np.float64],
    *,
    lead_time_h: float,
    safety_stock: float = 0.0,
    service_level: float = DEFAULT_SERVICE,
    review_h: float = DEFAULT_REVIEW_H,
    receipts: Sequence[Receipt] = (),
    horizon_h: int = DEFAULT_HORIZON_H,
    period_ms: int = HOUR_MS,
    bucket_h: float = DEFAULT_BUCKET_H,
    production: Production | None = None,
    planned_output: Sequence[PlannedOutput] = (),
) -> DepletionResult:
    """Depletion figures for one stock-level series (sorted, finite; see :func:`to_grid`).

    ``receipts``: scheduled receipts (open orders). ``production``: what the line that
    refills this stock has made (its counter), a known inflow: consumption is recovered as
    ``-(level change) + receipts + production``, not from level drops alone. ``planned_output``:
    scheduled production ahead, counted in the projection like receipts, period by period.
    """
    if not 0.5 <= service_level < 1.0:
        raise ValueError("service level must be in [0.5, 1)")
    if lead_time_h < 0 or review_h < 0 or safety_stock < 0:
        raise ValueError("lead time, review period and safety stock must not be negative")
    if ts_ms.size == 0:
        raise ValueError("no readings")
    levels, end_ms, notes = to_grid(ts_ms, stock, period_ms)
    negative = int(np.count_nonzero(stock < 0))
    if negative:
        notes.append(
            f"{negative} of {ts_ms.size} readings show a negative stock (lowest "
            f"{float(np.min(stock)):g}): read as units owed (backorders), not refused"
        )
    if levels.size < MIN_PERIODS:
        raise ValueError(
            f"need readings in at least {MIN_PERIODS} periods of {period_ms // 60000} min"
        )
    per_h = HOUR_MS / period_ms
    horizon = int(horizon_h * per_h)
    sched_t = np.array([(r.ts_ms - end_ms) / period_ms for r in receipts], dtype=np.float64)
    sched_q = np.array([r.qty for r in receipts], dtype=np.float64)
    if planned_output:
        plan_t, plan_q = _plan_receipts(planned_output, end_ms, period_ms, horizon)
        sched_t = np.concatenate([sched_t, plan_t])
        sched_q = np.concatenate([sched_q, plan_q])
    z = NormalDist().inv_cdf(service_level)
    args = (
        sched_t,
        sched_q,
        lead_time_h * per_h,
        review_h * per_h,
        float(safety_stock),
        z,
        horizon,
        max(round(bucket_h * per_h), 1),
    )
    inflow = np.empty(0, dtype=np.float64)
    if production is None:
        out = kd.depletion_one(levels, *args)
    else:
        inflow, note = _inflow(production, int(ts_ms[0]), levels.size, period_ms)
        notes.append(note)
        out = kd.depletion_net_one(levels, inflow, *args)
    censored = _censored(levels, inflow)
    if censored:
        notes.append(
            f"{censored} of {levels.size - 1} periods had the stock empty and no consumption: "
            "demand there was unmet, not zero, and is left out of the rate"
        )

    def when(periods: float) -> int | None:
        return None if math.isnan(periods) else end_ms + round(periods * period_ms)

    reorder_at = out[kd.F_REORDER_AT]
    reorder_by = when(reorder_at)
    if reorder_by is not None and reorder_by < end_ms:
        notes.append("the latest order date has passed: order now")
    return DepletionResult(
        as_of_ms=end_ms,
        stock=float(out[kd.F_STOCK]),
        rate_per_hour=float(out[kd.F_RATE]) * per_h,
        trend_per_hour=float(out[kd.F_TREND]) * per_h * per_h,
        demand_class=DemandClass(int(out[kd.F_CLASS])),
        model=Model(int(out[kd.F_MODEL])),
        noise=float(out[kd.F_NOISE]),
        stockout_ms=(when(out[kd.F_ZERO_P10]), when(out[kd.F_ZERO_P50]), when(out[kd.F_ZERO_P90])),
        safety_ms=(when(out[kd.F_SAFE_P10]), when(out[kd.F_SAFE_P50]), when(out[kd.F_SAFE_P90])),
        reorder_by_ms=reorder_by,
        reorder_qty=float(out[kd.F_REORDER_QTY]),
        notes=notes,
    )


def _censored(levels: npt.NDArray[np.float64], inflow: npt.NDArray[np.float64]) -> int:
    """How many periods the kernel leaves out of the demand estimate (``observed_demand``)."""
    m = levels.size - 1
    d, cons, rec = np.empty(m), np.empty(m), np.empty(m)
    noise = kd.consumption_net_into(levels, inflow, d, cons, rec)
    return m - int(kd.observed_demand(levels, cons, noise))


def _inflow(
    production: Production, first_ms: int, n: int, period_ms: int
) -> tuple[npt.NDArray[np.float64], str]:
    """Production per grid period (``n - 1`` values: what came in between consecutive levels)
    and a note saying how much was netted in."""
    ts = np.asarray(production.ts_ms, dtype=np.int64)
    if ts.size > 1 and (np.diff(ts) < 0).any():
        raise ValueError("production readings must be sorted by time")
    inc = production.increments()
    start = first_ms // period_ms
    idx = ts // period_ms - start
    keep = (idx >= 1) & (idx < n)
    inflow = np.bincount(idx[keep], weights=inc[keep], minlength=n)[1:n].astype(np.float64)
    covered = int(np.unique(idx[keep]).size) if keep.any() else 0
    return inflow, (
        f"production netted in: {inflow.sum():.0f} units in {covered} of {n - 1} periods"
    )


def _plan_receipts(
    plan: Sequence[PlannedOutput], end_ms: int, period_ms: int, horizon: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Planned output as one receipt per period it covers, at the period's end (periods from
    ``end_ms``); what was planned before ``end_ms`` is in the stock already."""
    ts: list[float] = []
    qs: list[float] = []
    limit = end_ms + horizon * period_ms
    for p in plan:
        if p.end_ms <= p.start_ms or p.qty <= 0:
            continue
        rate = p.qty / (p.end_ms - p.start_ms)
        lo, hi = max(p.start_ms, end_ms), min(p.end_ms, limit)
        if hi <= lo:
            continue
        k0 = (lo - end_ms) // period_ms
        k1 = -(-(hi - end_ms) // period_ms)
        ks = np.arange(k0, k1, dtype=np.int64)
        a = np.maximum(end_ms + ks * period_ms, lo)
        b = np.minimum(end_ms + (ks + 1) * period_ms, hi)
        ts.extend((ks + 1).astype(np.float64).tolist())
        qs.extend(((b - a) * rate).tolist())
    return np.array(ts, dtype=np.float64), np.array(qs, dtype=np.float64)
