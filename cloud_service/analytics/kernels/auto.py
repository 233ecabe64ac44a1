"""Automatic demand model: classify, pick the model of the class, forecast with its error.

Policy (by Syntetos-Boylan class): no demand forecasts zero; smooth and erratic demand
(ADI < 1.32) get SES with alpha chosen by one-step SSE among 16 log-spaced values in
``[0.02, 0.5]`` (one pass), or Holt (same alpha, beta 0.05) when a trend cuts the in-sample SSE
by a quarter; intermittent and lumpy demand get ``0.75 × IMAPA-SBA + 0.25 × TSB`` (model code
``IMAPA``; IMAPA-SBA is IMAPA with each level shrunk by SBA's ``1 - alpha/2``), both with their
smoothing constants chosen by how well the level, read as a flat
forecast, matched the mean of the next ``FLAT_H`` = 12 periods over the history (IMAPA: alpha
per aggregation level among 12 log-spaced values in ``[0.02, 0.3]``; TSB: ``alpha_d, alpha_p``
in ``TSB_GRID``). History: SBA, then ADIDA (chosen after carparts' results were seen), then IMAPA
with one-step SSE alphas (chosen on carparts' training months), then this blend (2026-11-26,
chosen on three validation origins inside carparts' training months, never on the held-out
year), then the SBA shrinkage on IMAPA's levels (2026-11-26, chosen on 13 validation origins
once the validation bias was scored over the series with demand only), see docs/analytics.md.
The MSE of one period's demand around the forecast comes with it,
for the quantiles of cumulative demand.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

from cloud_service.analytics.kernels.intermittent import (
    C_ERRATIC,
    C_NONE,
    C_SMOOTH,
    classify,
    imapa_flat,
    tsb_flat,
)
from cloud_service.analytics.kernels.smoothing import holt_state, ses_grid_alpha

F64 = npt.NDArray[np.float64]

SES_LO = 0.02
SES_HI = 0.5
SBA_ALPHA = 0.1
M_SES = 0
M_HOLT = 1
M_SBA = 3
M_ADIDA = 5
M_ZERO = 6
M_IMAPA = 7
HOLT_GAIN = 0.75  # Holt must bring the SSE under 75% of SES's
HOLT_BETA = 0.05
SES_GRID = np.exp(np.linspace(np.log(SES_LO), np.log(SES_HI), 16))
ADIDA_ITERS = 30
FLAT_H = 12  # periods a flat forecast is scored over when choosing smoothing constants
IMAPA_GRID = np.exp(np.linspace(np.log(0.02), np.log(0.3), 12))
TSB_GRID = np.array([0.02, 0.05, 0.1, 0.2, 0.3, 0.5])
TSB_WEIGHT = 0.25  # share of TSB in the intermittent forecast


@nb.njit(cache=True)
def ses_with_mse(y: F64, alpha: float) -> tuple[float, float]:
    """SES forecast and the mean squared one-step error (from the second value on)."""
    f = y[0]
    sse = 0.0
    c = 1.0 - alpha
    for i in range(1, y.size):
        f = alpha * y[i - 1] + c * f
        e = y[i] - f
        sse += e * e
    f = alpha * y[-1] + c * f
    return f, sse / max(y.size - 1, 1)


@nb.njit(cache=True)
def sba_with_mse(y: F64, alpha: float) -> tuple[float, float]:
    """SBA forecast and the mean squared one-step error over the periods after the first demand."""
    debias = 1.0 - alpha / 2.0
    z = 0.0
    p = 0.0
    q = 0.0
    k = 0
    sse = 0.0
    m = 0
    c = 1.0 - alpha
    for v in y:
        if k > 0:
            f = debias * z / p
            e = v - f
            sse += e * e
            m += 1
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
    if k == 0:
        return 0.0, 0.0
    return debias * z / p, sse / max(m, 1)


@nb.njit(cache=True)
def demand_mse(y: F64, rate: float) -> float:
    """Mean squared deviation of one period's demand from a flat forecast ``rate``."""
    acc = 0.0
    for v in y:
        acc += (v - rate) * (v - rate)
    return acc / max(y.size, 1)


@nb.njit(cache=True)
def auto_forecast(y: F64) -> tuple[int, int, float, float, float]:
    """``(class, model, rate per period, trend per period, mse)`` for non-negative demand."""
    if y.size == 0:
        return C_NONE, M_ZERO, 0.0, 0.0, 0.0
    cls, _, _ = classify(y)
    if cls == C_NONE:
        return cls, M_ZERO, 0.0, 0.0, 0.0
    if cls in (C_SMOOTH, C_ERRATIC):
        alpha = ses_grid_alpha(y, SES_GRID)
        f, mse = ses_with_mse(y, alpha)
        if cls == C_SMOOTH and y.size >= 8:
            lvl, tr, sse = holt_state(y, alpha, HOLT_BETA)
            if sse / (y.size - 1) < HOLT_GAIN * mse:
                return cls, M_HOLT, max(lvl + tr, 0.0), tr, sse / (y.size - 1)
        return cls, M_SES, f, 0.0, mse
    f = (1.0 - TSB_WEIGHT) * imapa_flat(y, IMAPA_GRID, FLAT_H, True) + TSB_WEIGHT * tsb_flat(
        y, TSB_GRID, FLAT_H
    )
    return cls, M_IMAPA, f, 0.0, demand_mse(y, f)


@nb.njit(cache=True, parallel=True)
def auto_forecast_many(
    y: F64,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8], F64, F64, F64]:
    """Rows of ``y`` are series: ``(class, model, rate, trend, mse)`` per row, in parallel."""
    n = y.shape[0]
    cls = np.empty(n, dtype=np.int8)
    model = np.empty(n, dtype=np.int8)
    rate = np.empty(n, dtype=np.float64)
    trend = np.empty(n, dtype=np.float64)
    mse = np.empty(n, dtype=np.float64)
    for i in nb.prange(n):
        c, m, f, t, e = auto_forecast(y[i])
        cls[i] = c
        model[i] = m
        rate[i] = f
        trend[i] = t
        mse[i] = e
    return cls, model, rate, trend, mse
