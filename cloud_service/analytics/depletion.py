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


@dataclass(frozen=True, slots=True)
class Receipt:
    """A scheduled receipt (purchase order, production output) expected at ``ts_ms``."""

    ts_ms: int
    qty: float


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


def to_grid(
    ts_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64], period_ms: int
) -> tuple[npt.NDArray[np.float64], int, list[str]]:
    """Last value per period from the first reading's period on; gaps carried forward.

    Returns ``(levels, end_ms, notes)`` where ``end_ms`` is the end of the last period.
    ``ts_ms`` must be sorted (callers check and say so).
    """
    notes: list[str] = []
    start = ts_ms[0] // period_ms
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
) -> DepletionResult:
    """Depletion figures for one stock-level series (sorted, finite; see :func:`to_grid`)."""
    if not 0.5 <= service_level < 1.0:
        raise ValueError("service level must be in [0.5, 1)")
    if lead_time_h < 0 or review_h < 0 or safety_stock < 0:
        raise ValueError("lead time, review period and safety stock must not be negative")
    if ts_ms.size == 0:
        raise ValueError("no readings")
    levels, end_ms, notes = to_grid(ts_ms, stock, period_ms)
    if levels.size < MIN_PERIODS:
        raise ValueError(
            f"need readings in at least {MIN_PERIODS} periods of {period_ms // 60000} min"
        )
    per_h = HOUR_MS / period_ms
    sched_t = np.array([(r.ts_ms - end_ms) / period_ms for r in receipts], dtype=np.float64)
    sched_q = np.array([r.qty for r in receipts], dtype=np.float64)
    z = NormalDist().inv_cdf(service_level)
    out = kd.depletion_one(
        levels,
        sched_t,
        sched_q,
        lead_time_h * per_h,
        review_h * per_h,
        float(safety_stock),
        z,
        int(horizon_h * per_h),
        max(round(bucket_h * per_h), 1),
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
