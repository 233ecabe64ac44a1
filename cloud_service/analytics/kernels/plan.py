"""Plan adherence kernels: counters to quantities, attainment, projection, mix drift."""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@nb.njit(cache=True)
def counter_increments(values: F64) -> F64:
    """Per-reading increments of a cumulative counter; a decrease is a reset (counts from 0).

    Non-finite readings add nothing and do not move the reference; a negative reading (a
    signed register read past its range) counts nothing: output is never negative.
    """
    out = np.zeros(values.size, dtype=np.float64)
    prev = math.nan
    for i in range(values.size):
        v = values[i]
        if not math.isfinite(v):
            continue
        if math.isfinite(prev):
            out[i] = v - prev if v >= prev else max(v, 0.0)
        prev = v
    return out


@nb.njit(cache=True)
def produced_between(ts: I64, values: F64, start: int, end: int) -> float:
    """Units counted by a cumulative counter in ``(start, end]`` (resets handled).

    A reading's increment is what was made since the previous reading, so it belongs to the
    interval ending at its timestamp.
    """
    inc = counter_increments(values)
    total = 0.0
    for i in range(ts.size):
        if start < ts[i] <= end:
            total += inc[i]
    return total


@nb.njit(cache=True, parallel=True)
def attainment_many(
    produced: F64, planned_so_far: F64, planned_total: F64, run_rate: F64, remaining: F64
) -> tuple[F64, F64, F64]:
    """Per line/SKU: ``(attainment so far, projected end-of-period attainment, required rate)``.

    Projection: produced + run rate × remaining time. Required rate: what the rest of the
    period needs to meet the plan (0 when already met). Attainment is ``nan`` with no plan.
    """
    n = produced.size
    att = np.empty(n)
    proj = np.empty(n)
    need = np.empty(n)
    for i in nb.prange(n):
        att[i] = produced[i] / planned_so_far[i] if planned_so_far[i] > 0.0 else math.nan
        end = produced[i] + max(run_rate[i], 0.0) * remaining[i]
        proj[i] = end / planned_total[i] if planned_total[i] > 0.0 else math.nan
        gap = planned_total[i] - produced[i]
        if gap <= 0.0:
            need[i] = 0.0
        elif remaining[i] > 0.0:
            need[i] = gap / remaining[i]
        else:
            need[i] = math.inf
    return att, proj, need


@nb.njit(cache=True)
def mix_drift(actual: F64, planned: F64) -> float:
    """Total-variation distance between the actual and the planned product mix (0 to 1).

    0: the line makes its SKUs in the planned proportions; 1: it makes only SKUs the plan does
    not have. ``nan`` when either side is empty.
    """
    sa = actual.sum()
    sp = planned.sum()
    if sa <= 0.0 or sp <= 0.0:
        return math.nan
    acc = 0.0
    for i in range(actual.size):
        acc += abs(actual[i] / sa - planned[i] / sp)
    return 0.5 * acc
