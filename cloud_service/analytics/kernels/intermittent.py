"""Intermittent-demand kernels: Croston (classic, SBA), TSB, ADIDA, IMAPA, the ADI/CV² classes.

Definitions follow statsforecast so that fixed-parameter forecasts agree with it:

* Croston: SES (alpha 0.1 by default) over the non-zero demand sizes and over the intervals
  between them (the first interval counts from before the first period); forecast
  ``size / interval``; SBA multiplies by ``1 - alpha/2`` (0.95 at alpha 0.1).
* TSB: SES of the demand indicator (every period) times SES of the sizes.
* ADIDA: sum over non-overlapping buckets of ``round(mean interval)`` periods (aligned to the
  end, the oldest incomplete bucket dropped), SES with alpha optimised in ``[0.1, 0.3]``, divided
  back by the bucket length. IMAPA (not in statsforecast): the mean of that forecast over the
  bucket lengths 1 to ``round(mean interval)``.
* ``imapa_flat`` and ``tsb_flat`` (the service's intermittent model, not in statsforecast):
  IMAPA and TSB with their smoothing constants chosen on a grid by how well the level, read as a
  flat forecast, matched the mean of the following ``h`` periods in the history.

Demand is assumed non-negative (depletion clips it); an all-zero history forecasts zero.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import numpy.typing as npt

from cloud_service.analytics.kernels.smoothing import (
    future_means,
    ses_flat_alpha,
    ses_level,
    ses_optimal_alpha,
)

F64 = npt.NDArray[np.float64]

ADI_CUTOFF = 1.32
CV2_CUTOFF = 0.49

C_SMOOTH = 0
C_ERRATIC = 1
C_INTERMITTENT = 2
C_LUMPY = 3
C_NONE = 4


@nb.njit(cache=True)
def croston_state(y: F64, alpha: float) -> tuple[float, float, int]:
    """``(size level, interval level, demands seen)`` after ``y`` (levels ``nan`` if none)."""
    z = math.nan
    p = math.nan
    q = 0.0
    k = 0
    c = 1.0 - alpha
    for v in y:
        q += 1.0
        if v != 0.0:
            if k == 0:
                z = v
                p = q
            else:
                z = alpha * v + c * z
                p = alpha * q + c * p
            q = 0.0
            k += 1
    return z, p, k


@nb.njit(cache=True)
def croston(y: F64, alpha: float, debias: float) -> float:
    """Croston's per-period forecast; ``debias`` 1.0 for classic, ``1 - alpha/2`` for SBA."""
    if y.size == 0:
        return math.nan
    z, p, k = croston_state(y, alpha)
    if k == 0:
        return float(y[-1])  # statsforecast falls back to the naive forecast
    f = z / p if p != 0.0 else z
    return f * debias


@nb.njit(cache=True)
def tsb(y: F64, alpha_d: float, alpha_p: float) -> float:
    """TSB per-period forecast: P(demand) × demand size, both by SES."""
    n = y.size
    if n == 0:
        return math.nan
    prob = 0.0
    c_p = 1.0 - alpha_p
    c_d = 1.0 - alpha_d
    size = math.nan
    k = 0
    for i in range(n):
        ind = 1.0 if y[i] != 0.0 else 0.0
        prob = ind if i == 0 else alpha_p * ind + c_p * prob
        if y[i] > 0.0:
            size = y[i] if k == 0 else alpha_d * y[i] + c_d * size
            k += 1
    if k == 0:
        return 0.0
    return prob * size


@nb.njit(cache=True)
def mean_interval(y: F64) -> float:
    """Mean interval between non-zero periods (the first counted from before period 0)."""
    last = -1
    total = 0.0
    k = 0
    for i in range(y.size):
        if y[i] != 0.0:
            total += i - last
            last = i
            k += 1
    return total / k if k > 0 else math.inf


@nb.njit(cache=True)
def adida(y: F64, iters: int = 30) -> float:
    """ADIDA per-period forecast (temporal aggregation to the mean interval, then SES).

    ``iters`` golden-section steps for alpha (30: statsforecast's precision; 12 is within 1e-3).
    """
    k = 0
    for v in y:
        if v != 0.0:
            k += 1
    if k == 0:
        return 0.0
    agg = int(np.rint(mean_interval(y)))
    return aggregate_ses(y, max(agg, 1), iters)


@nb.njit(cache=True)
def aggregate_ses(y: F64, agg: int, iters: int) -> float:
    """Per-period forecast from SES (alpha optimised in ``[0.1, 0.3]``) on sums over buckets
    of ``agg`` periods (aligned to the end, the oldest incomplete bucket dropped)."""
    m = y.size // agg
    if m == 0:
        return float(y.sum() / y.size)
    sums = np.empty(m, dtype=np.float64)
    start = y.size - m * agg
    for j in range(m):
        acc = 0.0
        for i in range(start + j * agg, start + (j + 1) * agg):
            acc += y[i]
        sums[j] = acc
    alpha = ses_optimal_alpha(sums, 0.1, 0.3, iters)
    return ses_level(sums, alpha) / agg


@nb.njit(cache=True)
def imapa_levels(y: F64) -> int:
    """IMAPA's top aggregation level, ``round(mean interval)`` (at least 1); 0 without demand."""
    for v in y:
        if v != 0.0:
            return max(int(np.rint(mean_interval(y))), 1)
    return 0


@nb.njit(cache=True)
def imapa(y: F64, iters: int = 30) -> float:
    """IMAPA per-period forecast: the mean of ADIDA's forecasts at every aggregation level
    from 1 to ``round(mean interval)`` (Petropoulos & Kourentzes 2015). ADIDA bets on one
    level; averaging over the levels up to it is less sensitive to that choice.
    """
    top = imapa_levels(y)
    if top == 0:
        return 0.0
    acc = 0.0
    for agg in range(1, top + 1):
        acc += aggregate_ses(y, agg, iters)
    return acc / top


@nb.njit(cache=True)
def bucket_sums_end(y: F64, agg: int) -> F64:
    """Sums over non-overlapping buckets of ``agg`` periods, aligned to the end (the oldest
    incomplete bucket dropped)."""
    m = y.size // agg
    sums = np.empty(m, dtype=np.float64)
    start = y.size - m * agg
    for j in range(m):
        acc = 0.0
        for i in range(start + j * agg, start + (j + 1) * agg):
            acc += y[i]
        sums[j] = acc
    return sums


@nb.njit(cache=True)
def imapa_flat(y: F64, grid: F64, h: int, sba: bool = False) -> float:
    """IMAPA with each level's alpha chosen on ``grid`` by :func:`ses_flat_alpha` against the
    next ``ceil(h / k)`` buckets of ``k`` periods, instead of by one-step SSE in [0.1, 0.3].

    ``sba``: each level's SES level times ``1 - alpha/2`` with its own alpha. SBA's factor is
    derived for Croston's ratio, not for SES of bucket sums, so here it is a borrowed shrinkage
    (larger where the level reacts faster): it was chosen on carparts' validation origins, where
    the unshrunk levels over-forecast the series with demand at every origin (docs/analytics.md).
    """
    top = imapa_levels(y)
    if top == 0:
        return 0.0
    acc = 0.0
    for agg in range(1, top + 1):
        sums = bucket_sums_end(y, agg)
        if sums.size == 0:
            acc += y.sum() / y.size
            continue
        hb = max((h + agg - 1) // agg, 1)
        lvl, alpha = ses_flat_alpha(sums, grid, hb)
        if sba:
            lvl *= 1.0 - alpha / 2.0
        acc += lvl / agg
    return acc / top


@nb.njit(cache=True)
def tsb_flat(y: F64, grid: F64, h: int) -> float:
    """TSB with ``(alpha_d, alpha_p)`` from ``grid × grid``, chosen like :func:`imapa_flat`:
    the forecast after each period against the mean of the next ``h`` (squared error)."""
    return tsb_flat_grids(y, grid, grid, h)


@nb.njit(cache=True)
def tsb_flat_grids(y: F64, grid_d: F64, grid_p: F64, h: int) -> float:
    """:func:`tsb_flat` with separate grids for the size (``alpha_d``) and probability
    (``alpha_p``) smoothing constants."""
    n = y.size
    if n == 0:
        return 0.0
    fm = future_means(y, h)
    best = math.inf
    best_f = 0.0
    for ad in grid_d:
        for ap in grid_p:
            p = 0.0
            z = 0.0
            seen = 0
            s = 0.0
            for t in range(n):
                ind = 1.0 if y[t] != 0.0 else 0.0
                p = ind if t == 0 else ap * ind + (1.0 - ap) * p
                if y[t] > 0.0:
                    z = y[t] if seen == 0 else ad * y[t] + (1.0 - ad) * z
                    seen += 1
                if t < n - 1:
                    e = p * z - fm[t]
                    s += e * e
            if s < best:
                best = s
                best_f = p * z
    return best_f


@nb.njit(cache=True)
def classify(y: F64) -> tuple[int, float, float]:
    """Syntetos-Boylan class of ``y`` with its ADI and CV² (of non-zero sizes)."""
    k = 0
    s1 = 0.0
    s2 = 0.0
    for v in y:
        if v > 0.0:
            k += 1
            s1 += v
            s2 += v * v
    if k == 0:
        return C_NONE, math.inf, 0.0
    adi = y.size / k
    mean = s1 / k
    var = max(s2 / k - mean * mean, 0.0)
    cv2 = var / (mean * mean) if mean > 0.0 else 0.0
    if adi < ADI_CUTOFF:
        return (C_SMOOTH if cv2 < CV2_CUTOFF else C_ERRATIC), adi, cv2
    return (C_INTERMITTENT if cv2 < CV2_CUTOFF else C_LUMPY), adi, cv2
