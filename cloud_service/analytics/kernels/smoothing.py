"""Exponential smoothing kernels: SES and Holt, their errors, and parameter search.

SES follows statsforecast's definition exactly (level starts at the first value and is updated
with every value including the first), so fixed-parameter forecasts can be checked against it.
Parameter search is a golden-section search on the one-step-ahead SSE: a dozen passes over
the series, cheap enough to refit 100k series in a few seconds.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@nb.njit(cache=True)
def ses_level(x: F64, alpha: float) -> float:
    """One-step-ahead SES forecast of ``x`` (statsforecast's ``ses_forecast`` mean)."""
    n = x.size
    if n == 0:
        return math.nan
    if n == 1:
        return float(x[0])
    c = 1.0 - alpha
    f = x[0]
    for i in range(n):
        f = alpha * x[i] + c * f
    return float(f)


@nb.njit(cache=True)
def ses_fitted(x: F64, alpha: float) -> F64:
    """In-sample one-step-ahead forecasts (``nan`` first), as statsforecast returns them."""
    n = x.size
    out = np.empty(n, dtype=np.float64)
    if n == 0:
        return out
    out[0] = math.nan
    c = 1.0 - alpha
    f = x[0]
    for i in range(1, n):
        f = alpha * x[i - 1] + c * f
        out[i] = f
    return out


@nb.njit(cache=True)
def ses_sse(x: F64, alpha: float) -> float:
    c = 1.0 - alpha
    f = x[0]
    sse = 0.0
    for i in range(1, x.size):
        f = alpha * x[i - 1] + c * f
        e = x[i] - f
        sse += e * e
    return sse


@nb.njit(cache=True)
def ses_optimal_alpha(x: F64, lo: float, hi: float, iters: int) -> float:
    """Golden-section search of the SSE-minimising alpha in ``[lo, hi]``."""
    if x.size < 3:
        return 0.5 * (lo + hi)  # the SSE does not depend on alpha
    a, b = lo, hi
    c = b - GOLDEN * (b - a)
    d = a + GOLDEN * (b - a)
    fc = ses_sse(x, c)
    fd = ses_sse(x, d)
    for _ in range(iters):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = ses_sse(x, c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = ses_sse(x, d)
    return 0.5 * (a + b)


@nb.njit(cache=True)
def ses_grid_alpha(x: F64, grid: F64) -> float:
    """The grid alpha with the least one-step SSE; all candidates in one pass over ``x``."""
    k = grid.size
    f = np.full(k, x[0])
    sse = np.zeros(k)
    for i in range(1, x.size):
        prev = x[i - 1]
        cur = x[i]
        for j in range(k):
            f[j] = grid[j] * prev + (1.0 - grid[j]) * f[j]
            e = cur - f[j]
            sse[j] += e * e
    return float(grid[np.argmin(sse)])


@nb.njit(cache=True)
def holt_state(x: F64, alpha: float, beta: float) -> tuple[float, float, float]:
    """Holt's linear method: ``(level, trend, sse)`` after ``x``; level ``x0``, trend ``x1-x0``."""
    n = x.size
    if n == 0:
        return math.nan, 0.0, 0.0
    if n == 1:
        return x[0], 0.0, 0.0
    lvl = x[0]
    tr = x[1] - x[0]
    sse = 0.0
    for i in range(1, n):
        f = lvl + tr
        e = x[i] - f
        sse += e * e
        new = alpha * x[i] + (1.0 - alpha) * f
        tr = beta * (new - lvl) + (1.0 - beta) * tr
        lvl = new
    return lvl, tr, sse


@nb.njit(cache=True)
def holt_optimal(x: F64, grid: F64) -> tuple[float, float, float, float, float]:
    """Grid search of ``(alpha, beta)``: returns ``(alpha, beta, level, trend, sse)``."""
    best = (grid[0], grid[0], math.nan, 0.0, math.inf)
    for a in grid:
        for b in grid:
            if b > a:
                continue
            lvl, tr, sse = holt_state(x, a, b)
            if sse < best[4]:
                best = (a, b, lvl, tr, sse)
    return best


@nb.njit(cache=True)
def future_means(x: F64, h: int) -> F64:
    """``out[t]`` = mean of ``x[t+1 : t+1+h]`` (fewer at the end) for ``t`` in ``0 .. n-2``:
    what a flat forecast made after period ``t`` should have said over the next ``h``."""
    n = x.size
    cs = np.zeros(n + 1)
    for i in range(n):
        cs[i + 1] = cs[i] + x[i]
    out = np.empty(max(n - 1, 0))
    for t in range(n - 1):
        e = min(n, t + 1 + h)
        out[t] = (cs[e] - cs[t + 1]) / (e - t - 1)
    return out


@nb.njit(cache=True)
def ses_flat_alpha(x: F64, grid: F64, h: int) -> tuple[float, float]:
    """``(level, alpha)``: the grid alpha whose SES level, read as a flat forecast, is closest
    (squared error) to the mean of the next ``h`` values, summed over the history.

    One-step SSE rewards chasing the last value; a flat forecast is used for ``h`` periods, so
    the level is scored against what followed it over that many. Under 3 values: the mean.
    """
    n = x.size
    if n < 3:
        return float(x.sum() / max(n, 1)), float(grid[0])
    fm = future_means(x, h)
    best = math.inf
    best_a = grid[0]
    best_lvl = 0.0
    for j in range(grid.size):
        a = grid[j]
        c = 1.0 - a
        f = x[0]
        s = 0.0
        for t in range(n):
            f = a * x[t] + c * f
            if t < n - 1:
                e = f - fm[t]
                s += e * e
        if s < best:
            best = s
            best_a = a
            best_lvl = f
    return float(best_lvl), float(best_a)
