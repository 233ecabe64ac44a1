"""Stock depletion kernels: consumption from stock levels, time-to-threshold quantiles, reorder.

* Consumption: per-period level drops ``d = s[t-1] - s[t]``, plus the period's known inflow
  if any (the output of the line that refills this stock: ``-(change) + produced``). A rise
  far beyond what the spread of changes explains (``RECEIPT_K`` robust sigmas) is a receipt;
  its period's consumption is unknown and imputed with the mean. Negative changes that are
  not receipts are pure sensor noise, so their RMS measures the noise; drops under
  ``NOISE_K`` times it are set to zero (so noise does not look like demand in every period),
  then the series is rescaled to keep the total the stock levels prove was consumed (noise
  cancels in the sum).
* Demand model: consumption is summed into buckets of ``bucket`` periods (a day of hours: the
  horizon of a stockout is days, and hourly sums are mostly noise and zeros), aligned to the
  last period; the automatic model (:mod:`.auto`) forecasts per bucket; rate, trend and MSE are
  scaled back to one period (a history shorter than 4 buckets is modelled per period).
* Cumulative demand over ``h`` periods: mean ``sum(rate + trend k)``, variance
  ``h mse + h² mse a/(2-a) / b`` (the period noise plus the uncertainty of a rate smoothed
  over buckets of ``b`` periods), normal.
* Time to a threshold ``L`` at quantile ``q``: the first ``h`` at which demand at its
  ``1-q`` quantile reaches ``stock + receipts by h - L`` (P10 is the early, pessimistic date).
* Reorder: the latest order time is the P(service) time to safety stock minus the lead time
  (``nan``, quantity 0, when safety stock is not reached within the horizon; a stock already
  under it is ordered now, demand or not); the quantity tops the inventory position up to
  demand over lead time + review period at the service level, plus safety stock.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import numpy.typing as npt

from cloud_service.analytics.kernels.auto import auto_forecast

F64 = npt.NDArray[np.float64]

RECEIPT_K = 5.0
NOISE_K = 2.0
RATE_ALPHA = 0.1  # smoothing weight behind the rate-uncertainty term
Z10 = 1.2815515655446004  # standard normal 90% quantile


F_CLASS = 0
F_MODEL = 1
F_RATE = 2
F_TREND = 3
F_NOISE = 4
F_STOCK = 5
F_ZERO_P10 = 6
F_ZERO_P50 = 7
F_ZERO_P90 = 8
F_SAFE_P10 = 9
F_SAFE_P50 = 10
F_SAFE_P90 = 11
F_REORDER_AT = 12
F_REORDER_QTY = 13
N_FIELDS = 14
FIELDS = (
    "demand_class",
    "model",
    "rate",
    "trend",
    "noise",
    "stock",
    "stockout_p10",
    "stockout_p50",
    "stockout_p90",
    "safety_stock_p10",
    "safety_stock_p50",
    "safety_stock_p90",
    "reorder_at",
    "reorder_qty",
)


@nb.njit(cache=True)
def recover_consumption(levels: F64) -> tuple[F64, F64, float]:
    """``(consumption per period, receipt quantity per period, noise RMS)``; ``T-1`` periods.

    Non-finite levels are carried forward (a missing reading is not a change).
    """
    return recover_consumption_net(levels, np.empty(0, dtype=np.float64))


@nb.njit(cache=True)
def recover_consumption_net(levels: F64, inflow: F64) -> tuple[F64, F64, float]:
    """:func:`recover_consumption` with a known inflow per period (``T-1`` values, e.g. a
    production line's output into this stock; empty: none): consumption is
    ``-(level change) + inflow`` before receipts and noise are taken out.
    """
    m = max(levels.size - 1, 0)
    d = np.empty(m, dtype=np.float64)
    cons = np.empty(m, dtype=np.float64)
    rec = np.empty(m, dtype=np.float64)
    noise = consumption_net_into(levels, inflow, d, cons, rec)
    return cons, rec, noise


@nb.njit(cache=True)
def consumption_into(levels: F64, d: F64, cons: F64, rec: F64) -> float:
    """:func:`recover_consumption` into caller buffers of ``T-1``; returns the noise RMS."""
    return consumption_net_into(levels, np.empty(0, dtype=np.float64), d, cons, rec)


@nb.njit(cache=True)
def consumption_net_into(  # noqa: PLR0912, PLR0915
    levels: F64, inflow: F64, d: F64, cons: F64, rec: F64
) -> float:
    """:func:`recover_consumption_net` into caller buffers of ``T-1``; returns the noise RMS.

    ``inflow`` holds what arrived between level ``t-1`` and level ``t`` at index ``t-1``
    (non-finite: nothing); an empty array means no known inflow.
    """
    n = levels.size
    m = max(n - 1, 0)
    cons[:m] = 0.0
    rec[:m] = 0.0
    if m == 0:
        return 0.0
    netted = inflow.size >= m
    prev = levels[0]
    for t in range(1, n):
        cur = levels[t] if math.isfinite(levels[t]) else prev
        d[t - 1] = prev - cur if math.isfinite(prev) else 0.0
        if netted and math.isfinite(inflow[t - 1]):
            d[t - 1] += inflow[t - 1]
        prev = cur
    # robust centre and spread of the changes without sorting: a winsorised mean absolute
    # deviation (receipts are rare, huge, and clipped out); floor so flat series still work
    med = 0.0
    for t in range(m):
        med += d[t]
    med /= m
    mad = 0.0
    for t in range(m):
        mad += abs(d[t] - med)
    mad /= m
    lim = 5.0 * mad
    c = 0.0
    for t in range(m):
        c += max(min(d[t], med + lim), med - lim)
    med = c / m
    a = 0.0
    for t in range(m):
        a += min(abs(d[t] - med), lim)
    mad = a / m
    spread = max(1.2533 * mad, 1e-9 * max(abs(levels[0]), 1.0))
    bar = med - RECEIPT_K * spread
    ss = 0.0
    k = 0
    for t in range(m):
        if d[t] < bar:
            rec[t] = -1.0  # mark
        elif d[t] < 0.0:
            ss += d[t] * d[t]
            k += 1
    noise = math.sqrt(ss / k) if k > 0 else 0.0
    thr = NOISE_K * noise
    total = 0.0
    kept = 0.0
    normal = 0
    for t in range(m):
        if rec[t] < 0.0:
            continue
        total += d[t]
        normal += 1
        if d[t] > thr:
            cons[t] = d[t]
            kept += d[t]
    scale = total / kept if kept > 0.0 and total > 0.0 else 0.0
    mean = total / normal if normal > 0 and total > 0.0 else 0.0
    for t in range(m):
        if rec[t] < 0.0:
            cons[t] = mean
            rec[t] = mean - d[t]
        else:
            cons[t] *= scale
    return noise


@nb.njit(cache=True)
def crossing_times(  # noqa: PLR0917
    stock: float,
    rate: float,
    trend: float,
    mse: float,
    var_rate: float,
    sched_t: F64,
    sched_q: F64,
    thresholds: F64,
    zs: F64,
    horizon: int,
) -> F64:
    """Periods until stock reaches each threshold with demand at ``mean + z sd``, per ``z``.

    ``mse``: variance of one period's demand; ``var_rate``: variance of the rate estimate
    (demand over ``h`` periods has variance ``h mse + h² var_rate``).

    Returns ``(len(thresholds), len(zs))``. ``sched_t``/``sched_q``: scheduled receipts
    (periods from now, quantity). ``nan`` when not reached within ``horizon``; 0 when stock
    is already at or under the threshold. One scan over the horizon serves all of them.
    """
    nt = thresholds.size
    nz = zs.size
    out = np.full((nt, nz), np.nan)
    pending = 0
    for a in range(nt):
        if stock <= thresholds[a]:
            out[a, :] = 0.0
        else:
            pending += nz
    if pending == 0:
        return out
    # receipts binned by the period they land in (h - 1 < t <= h): O(receipts + horizon), so
    # a production plan (one receipt per period) costs no more than one order
    due = np.zeros(horizon + 1, dtype=np.float64)
    for j in range(sched_t.size):
        t = sched_t[j]
        if 0.0 < t <= horizon:
            due[math.ceil(t)] += sched_q[j]
    mean = 0.0
    received = 0.0
    for h in range(1, horizon + 1):
        mean += max(rate + trend * (h - 1), 0.0)
        sd = math.sqrt(h * mse + h * h * var_rate)
        received += due[h]
        for a in range(nt):
            avail = stock + received - thresholds[a]
            for i in range(nz):
                if math.isnan(out[a, i]) and mean + zs[i] * sd >= avail:
                    out[a, i] = h
                    pending -= 1
        if pending == 0:
            break
    return out


@nb.njit(cache=True)
def demand_quantile(  # noqa: PLR0917
    rate: float, trend: float, mse: float, var_rate: float, h: float, z: float
) -> float:
    """Demand over ``h`` periods at ``mean + z sd`` (not below zero)."""
    hi = math.ceil(h)
    mean = 0.0
    for k in range(hi):
        mean += max(rate + trend * k, 0.0)
    var = h * mse + h * h * var_rate
    return max(mean + z * math.sqrt(var), 0.0)


@nb.njit(cache=True)
def bucket_sums(y: F64, bucket: int) -> F64:
    """Sums over consecutive buckets aligned to the end; the oldest partial bucket is dropped."""
    m = y.size // bucket
    out = np.empty(m, dtype=np.float64)
    start = y.size - m * bucket
    for j in range(m):
        acc = 0.0
        base = start + j * bucket
        for i in range(bucket):
            acc += y[base + i]
        out[j] = acc
    return out


@nb.njit(cache=True)
def forecast_rate(cons: F64, bucket: int) -> tuple[int, int, float, float, float, float]:
    """``(class, model, rate, trend, mse, var_rate)`` per period, modelled on bucket sums.

    A bucket's demand has variance ``mse_b`` around the forecast, so one period's share is
    ``mse_b / b``; the smoothed level has variance ``mse_b a/(2-a)`` per bucket, so the rate
    per period has ``mse_b a/(2-a) / b²`` (= period mse ``· a/(2-a) / b``).
    """
    b = bucket if bucket > 1 and cons.size >= 4 * bucket else 1
    if b == 1:
        cls, model, rate, trend, mse = auto_forecast(cons)
    else:
        cls, model, rate, trend, mse = auto_forecast(bucket_sums(cons, b))
        rate, trend, mse = rate / b, trend / (b * b), mse / b
    return cls, model, rate, trend, mse, mse * RATE_ALPHA / (2.0 - RATE_ALPHA) / b


@nb.njit(cache=True)
def depletion_one(  # noqa: PLR0917
    levels: F64,
    sched_t: F64,
    sched_q: F64,
    lead: float,
    review: float,
    safety: float,
    z_service: float,
    horizon: int,
    bucket: int,
) -> F64:
    """All depletion figures of one series, in periods from the last level (see ``FIELDS``)."""
    return depletion_net_one(
        levels,
        np.empty(0, dtype=np.float64),
        sched_t,
        sched_q,
        lead,
        review,
        safety,
        z_service,
        horizon,
        bucket,
    )


@nb.njit(cache=True)
def depletion_net_one(  # noqa: PLR0917
    levels: F64,
    inflow: F64,
    sched_t: F64,
    sched_q: F64,
    lead: float,
    review: float,
    safety: float,
    z_service: float,
    horizon: int,
    bucket: int,
) -> F64:
    """:func:`depletion_one` with a known inflow per period (``T-1``; empty: none), e.g. the
    output of the production line that refills this stock (see :func:`recover_consumption_net`).
    """
    out = np.empty(N_FIELDS, dtype=np.float64)
    m = max(levels.size - 1, 0)
    scratch = np.empty((3, m), dtype=np.float64)
    depletion_into(
        levels,
        inflow,
        sched_t,
        sched_q,
        lead,
        review,
        safety,
        z_service,
        horizon,
        bucket,
        out,
        scratch,
    )
    return out


@nb.njit(cache=True)
def observed_demand(levels: F64, cons: F64, noise: float) -> int:
    """Move the periods whose demand was observed to the front of ``cons``; returns how many.

    A period that starts and ends with the stock empty (within three sensor-noise RMS of zero)
    and shows no consumption says nothing about demand: it was there, unmet (censored). Read
    as zero it would pull the rate down after every stockout. Backorders (a level falling
    below zero) are consumption and stay.
    """
    floor = 3.0 * noise
    k = 0
    for t in range(cons.size):
        a, b = levels[t], levels[t + 1]
        if a <= floor and b <= floor and cons[t] <= floor:
            continue
        cons[k] = cons[t]
        k += 1
    return k


@nb.njit(cache=True)
def depletion_into(  # noqa: PLR0917
    levels: F64,
    inflow: F64,
    sched_t: F64,
    sched_q: F64,
    lead: float,
    review: float,
    safety: float,
    z_service: float,
    horizon: int,
    bucket: int,
    out: F64,
    scratch: F64,
) -> None:
    """:func:`depletion_net_one` into ``out`` with a ``(3, >= T-1)`` scratch buffer."""
    out[:] = np.nan
    m = max(levels.size - 1, 0)
    cons = scratch[1, :m]
    noise = consumption_net_into(levels, inflow, scratch[0, :m], cons, scratch[2, :m])
    cons = cons[: observed_demand(levels, cons, noise)]
    cls, model, rate, trend, mse, var_rate = forecast_rate(cons, bucket)
    stock = levels[-1]
    out[F_CLASS] = cls
    out[F_MODEL] = model
    out[F_RATE] = rate
    out[F_TREND] = trend
    out[F_NOISE] = noise
    out[F_STOCK] = stock
    zs = np.array([Z10, 0.0, -Z10, z_service])
    both = crossing_times(
        stock, rate, trend, mse, var_rate, sched_t, sched_q, np.array([0.0, safety]), zs, horizon
    )
    zero = both[0]
    safe = both[1]
    out[F_ZERO_P10] = zero[0]
    out[F_ZERO_P50] = zero[1]
    out[F_ZERO_P90] = zero[2]
    out[F_SAFE_P10] = safe[0]
    out[F_SAFE_P50] = safe[1]
    out[F_SAFE_P90] = safe[2]
    # no demand is no reason to skip: a stock already under safety stock still needs topping
    # up. Safety stock not reached within the horizon: no order is due, no date is invented.
    if not math.isnan(safe[3]):
        order_at = safe[3] - lead
    elif not math.isnan(safe[1]):
        order_at = safe[1] - lead
    else:
        out[F_REORDER_QTY] = 0.0
        return
    out[F_REORDER_AT] = order_at
    t_o = max(order_at, 0.0)
    used = demand_quantile(rate, trend, mse, var_rate, t_o, 0.0)
    position = stock - used
    covered = t_o + lead + review  # receipts due by the end of what this order must cover
    for j in range(sched_t.size):
        if sched_t[j] <= covered:
            position += sched_q[j]
    target = demand_quantile(rate, trend, mse, var_rate, lead + review, z_service) + safety
    qty = max(math.ceil(target - position), 0.0)
    out[F_REORDER_QTY] = qty
    if qty == 0.0 and rate <= 0.0 and trend <= 0.0:
        out[F_REORDER_AT] = np.nan  # no demand, nothing to top up (at safety stock): no order


@nb.njit(cache=True)
def depletion_many(  # noqa: PLR0917
    levels: F64,
    sched_t: F64,
    sched_q: F64,
    lead: F64,
    review: F64,
    safety: F64,
    z_service: float,
    horizon: int,
    bucket: int,
) -> F64:
    """Rows of ``levels`` are series (same periods); returns ``(n, N_FIELDS)`` in parallel.

    ``sched_t``/``sched_q`` are ``(n, k)`` scheduled receipts per series (``q = 0`` pads).
    """
    return depletion_net_many(
        levels,
        np.empty((levels.shape[0], 0), dtype=np.float64),
        sched_t,
        sched_q,
        lead,
        review,
        safety,
        z_service,
        horizon,
        bucket,
    )


@nb.njit(cache=True, parallel=True)
def depletion_net_many(  # noqa: PLR0917
    levels: F64,
    inflow: F64,
    sched_t: F64,
    sched_q: F64,
    lead: F64,
    review: F64,
    safety: F64,
    z_service: float,
    horizon: int,
    bucket: int,
) -> F64:
    """:func:`depletion_many` with known inflows: ``(n, T-1)``, or ``(n, 0)`` for none."""
    n, t_len = levels.shape
    out = np.empty((n, N_FIELDS), dtype=np.float64)
    n_chunks = min(n, 64)
    for c in nb.prange(n_chunks):
        scratch = np.empty((3, max(t_len - 1, 0)), dtype=np.float64)  # reused per chunk
        for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            depletion_into(
                levels[i],
                inflow[i],
                sched_t[i],
                sched_q[i],
                lead[i],
                review[i],
                safety[i],
                z_service,
                horizon,
                bucket,
                out[i],
                scratch,
            )
    return out
