"""Plan adherence: production against the S&OP plan per line and SKU, demand against its plan.

Pure functions on arrays (kernels in :mod:`.kernels.plan`). A plan period (a shift, a day, a
week) has a planned quantity spread over it either evenly or by a given cumulative profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud_service.analytics.kernels import plan as kp

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class PlanPeriod:
    start_ms: int
    end_ms: int
    planned_qty: float

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ValueError("a plan period must end after it starts")
        if self.planned_qty < 0 or not math.isfinite(self.planned_qty):
            raise ValueError("planned quantity must be finite and not negative")

    def planned_by(self, now_ms: int) -> float:
        """Planned quantity due by ``now_ms`` with the plan spread evenly over the period."""
        frac = (min(max(now_ms, self.start_ms), self.end_ms) - self.start_ms) / (
            self.end_ms - self.start_ms
        )
        return self.planned_qty * frac


@dataclass(frozen=True, slots=True)
class Adherence:
    produced: float
    planned_so_far: float
    attainment: float  # produced / planned so far (nan before the plan has asked for anything)
    run_rate_per_hour: float
    projected_qty: float
    projected_attainment: float  # projected end-of-period output / period plan
    required_rate_per_hour: float  # to meet the plan in the remaining time (inf if none left)


def adherence(
    ts_ms: I64,
    counter: F64,
    period: PlanPeriod,
    now_ms: int,
    *,
    rate_window_h: float = 2.0,
) -> Adherence:
    """Production of one line/SKU so far, from a cumulative counter, against ``period``.

    The run rate is the output of the last ``rate_window_h`` hours (or of the period so far,
    if shorter), so a line that stopped projects no more output.
    """
    ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
    vals = np.ascontiguousarray(counter, dtype=np.float64)
    now = min(now_ms, period.end_ms)
    produced = kp.produced_between(ts, vals, period.start_ms, now)
    window_start = max(period.start_ms, now - int(rate_window_h * HOUR_MS))
    recent = kp.produced_between(ts, vals, window_start, now)
    hours = (now - window_start) / HOUR_MS
    rate = recent / hours if hours > 0 else 0.0
    remaining_h = max(period.end_ms - now, 0) / HOUR_MS
    att, proj, need = kp.attainment_many(
        np.array([produced]),
        np.array([period.planned_by(now)]),
        np.array([period.planned_qty]),
        np.array([rate]),
        np.array([remaining_h]),
    )
    return Adherence(
        produced=produced,
        planned_so_far=period.planned_by(now),
        attainment=float(att[0]),
        run_rate_per_hour=rate,
        projected_qty=produced + rate * remaining_h,
        projected_attainment=float(proj[0]),
        required_rate_per_hour=float(need[0]),
    )


def mix_drift(actual: npt.ArrayLike, planned: npt.ArrayLike) -> float:
    """Share of the output made in other proportions than planned (0..1), SKUs aligned."""
    a = np.ascontiguousarray(actual, dtype=np.float64)
    p = np.ascontiguousarray(planned, dtype=np.float64)
    if a.shape != p.shape or a.ndim != 1:
        raise ValueError("actual and planned must be 1-D and aligned by SKU")
    if (a < 0).any() or (p < 0).any():
        raise ValueError("quantities must not be negative")
    return float(kp.mix_drift(a, p))


@dataclass(frozen=True, slots=True)
class DemandVsPlan:
    actual: float
    planned: float
    excess: float  # actual - planned so far (a surge is positive)
    ratio: float  # actual / planned (nan with no plan)
    buffer_used: float  # excess / safety stock: 1.0 means the surge has eaten the buffer


def demand_vs_plan(
    actual_so_far: float, planned_so_far: float, safety_stock: float
) -> DemandVsPlan:
    """Demand against the demand plan, and how much of the buffer stock a surge has used."""
    excess = actual_so_far - planned_so_far
    ratio = actual_so_far / planned_so_far if planned_so_far > 0 else math.nan
    no_buffer = math.inf if excess > 0 else 0.0
    used = max(excess, 0.0) / safety_stock if safety_stock > 0 else no_buffer
    return DemandVsPlan(actual_so_far, planned_so_far, excess, ratio, used)
