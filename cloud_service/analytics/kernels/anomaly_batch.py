"""Batch entry points of the anomaly kernel: many series per call, in parallel.

``update_batch`` takes an ingest batch as it comes (any mix of series), groups it by series
with a counting sort (O(batch + series)), runs the series in parallel and returns results in
input order (a batch already grouped and in time order, as a replay is, is run in place);
``update_grouped`` is the same for points already grouped by series; ``silent_since`` is the
clock-driven no-data check.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from cloud_service.analytics.kernels.anomaly import (
    F64,
    I8,
    I64,
    P_PERIOD_MS,
    S_DT_MEAN,
    S_LAST_TS,
    S_N,
    _run,
)


@nb.njit(cache=True, parallel=True)
def update_grouped(  # noqa: PLR0917
    state: F64,
    profile: F64,
    params: F64,
    series: I64,
    offsets: I64,
    ts: I64,
    x: F64,
    score: F64,
    flag: I8,
    reason: I8,
) -> None:
    """Update many series in parallel: points of ``series[g]`` are ``offsets[g]:offsets[g+1]``.

    Each series must appear in one group only; within a group points are in event-time order.
    Results are written in place, at the points' positions.
    """
    for g in nb.prange(series.size):
        _run(
            state,
            profile,
            params,
            series[g],
            ts,
            x,
            offsets[g],
            offsets[g + 1],
            score,
            flag,
            reason,
        )


@nb.njit(cache=True)
def silent_since(state: F64, params: F64, now_ms: int, factor: float) -> F64:
    """No data: per series, the gap ``now - last sample`` in expected periods when it exceeds
    ``factor`` periods, else 0 (also 0 for series that never reported or have no period yet).

    Silence is noticed by checking the clock, not at the next sample: this runs on a timer.
    """
    n = state.shape[0]
    out = np.zeros(n, dtype=np.float64)
    for s in range(n):
        if state[s, S_N] == 0.0:
            continue
        period = params[s, P_PERIOD_MS]
        if period <= 0.0:
            period = state[s, S_DT_MEAN]
        if period <= 0.0:
            continue
        gap = (now_ms - state[s, S_LAST_TS]) / period
        if gap > factor:
            out[s] = gap
    return out


@nb.njit(cache=True)
def group_by_series(ids: I64, ts: I64, n_series: int) -> tuple[I64, I64, I64, bool]:
    """Stable counting sort of a batch by series: ``(order, series, offsets, time_ordered)``.

    O(batch + n_series), against O(n log n) for a general sort. ``time_ordered`` is False when
    some series' points are not in time order within the batch (the caller then sorts by time).
    """
    counts = np.zeros(n_series + 1, dtype=np.int64)
    for i in range(ids.size):
        counts[ids[i] + 1] += 1
    n_groups = 0
    for s in range(1, n_series + 1):
        if counts[s] > 0:
            n_groups += 1
        counts[s] += counts[s - 1]
    pos = counts[:-1].copy()
    order = np.empty(ids.size, dtype=np.int64)
    for i in range(ids.size):
        s = ids[i]
        order[pos[s]] = i
        pos[s] += 1
    series = np.empty(n_groups, dtype=np.int64)
    offsets = np.empty(n_groups + 1, dtype=np.int64)
    g = 0
    for s in range(n_series):
        if counts[s + 1] > counts[s]:
            series[g] = s
            offsets[g] = counts[s]
            g += 1
    offsets[n_groups] = ids.size
    ordered = True
    for g in range(n_groups):
        for k in range(offsets[g] + 1, offsets[g + 1]):
            if ts[order[k]] < ts[order[k - 1]]:
                ordered = False
                break
        if not ordered:
            break
    return order, series, offsets, ordered


def update_batch(  # noqa: PLR0917
    state: F64, profile: F64, params: F64, ids: I64, ts: I64, x: F64
) -> tuple[F64, I8, I8]:
    """One ingest batch, any mix of series: group, run series in parallel, results in input
    order. Points older than their series' state get ``flag == LATE`` and are not used.
    """
    n = ids.size
    score = np.empty(n, dtype=np.float64)
    flag = np.empty(n, dtype=np.int8)
    reason = np.empty(n, dtype=np.int8)
    update_batch_into(state, profile, params, ids, ts, x, score, flag, reason)
    return score, flag, reason


@nb.njit(cache=True, parallel=True)
def update_batch_into(  # noqa: PLR0917
    state: F64,
    profile: F64,
    params: F64,
    ids: I64,
    ts: I64,
    x: F64,
    score: F64,
    flag: I8,
    reason: I8,
) -> None:
    """:func:`update_batch` into caller-owned result arrays (a rebuild reuses one set:
    fresh 100 MB arrays cost a third of the kernel's time in page faults)."""
    n = ids.size
    runs, series, offsets = _sorted_runs(ids, ts, state.shape[0])
    if runs:  # already grouped by series and in time order (a replay): run in place
        for g in nb.prange(series.size):
            lo, hi = offsets[g], offsets[g + 1]
            _run(state, profile, params, series[g], ts, x, lo, hi, score, flag, reason)
        return
    order, series, offsets, ordered = group_by_series(ids, ts, state.shape[0])
    if not ordered:
        for g in range(series.size):
            lo, hi = offsets[g], offsets[g + 1]
            if hi - lo <= 32:  # insertion sort: stable, no allocation, fine for short runs
                for k in range(lo + 1, hi):
                    cur = order[k]
                    j = k - 1
                    while j >= lo and ts[order[j]] > ts[cur]:
                        order[j + 1] = order[j]
                        j -= 1
                    order[j + 1] = cur
            else:
                seg = order[lo:hi].copy()
                order[lo:hi] = seg[np.argsort(ts[seg], kind="mergesort")]
    sts = np.empty(n, dtype=np.int64)
    sx = np.empty(n, dtype=np.float64)
    for i in nb.prange(n):
        sts[i] = ts[order[i]]
        sx[i] = x[order[i]]
    sc = np.empty(n, dtype=np.float64)
    fl = np.empty(n, dtype=np.int8)
    rc = np.empty(n, dtype=np.int8)
    for g in nb.prange(series.size):
        _run(state, profile, params, series[g], sts, sx, offsets[g], offsets[g + 1], sc, fl, rc)
    for i in nb.prange(n):  # order is a permutation: every j is written once
        j = order[i]
        score[j] = sc[i]
        flag[j] = fl[i]
        reason[j] = rc[i]


@nb.njit(cache=True)
def _sorted_runs(ids: I64, ts: I64, n_series: int) -> tuple[bool, I64, I64]:
    """One pass: whether ``ids`` are ascending with each series' times ascending, and then
    ``(series, offsets)`` of its runs (a fraction of the counting sort's cost)."""
    n = ids.size
    cap = min(n, n_series) + 1
    series = np.empty(cap, dtype=np.int64)
    offsets = np.empty(cap + 1, dtype=np.int64)
    g = 0
    for i in range(n):
        if i == 0 or ids[i] != ids[i - 1]:
            if i > 0 and ids[i] < ids[i - 1]:
                return False, series[:0], offsets[:1]
            series[g] = ids[i]
            offsets[g] = i
            g += 1
        elif ts[i] < ts[i - 1]:
            return False, series[:0], offsets[:1]
    offsets[g] = n
    return True, series[:g], offsets[: g + 1]


@nb.njit(cache=True)
def update_small(  # noqa: PLR0917
    state: F64, profile: F64, params: F64, ids: I64, ts: I64, x: F64
) -> tuple[F64, I8, I8]:
    """``update_batch`` for a small batch (one ingest message): the same results, serial, and
    grouped by sorting the batch, O(b log b), instead of a counting sort over every series
    the engine holds, O(b + series), and without waking numba's thread pool."""
    n = ids.size
    by_ts = np.argsort(ts, kind="mergesort")
    order = by_ts[np.argsort(ids[by_ts], kind="mergesort")]  # by series, then event time
    sts = np.empty(n, dtype=np.int64)
    sx = np.empty(n, dtype=np.float64)
    for i in range(n):
        sts[i] = ts[order[i]]
        sx[i] = x[order[i]]
    sc = np.empty(n, dtype=np.float64)
    fl = np.empty(n, dtype=np.int8)
    rc = np.empty(n, dtype=np.int8)
    lo = 0
    while lo < n:
        sid = ids[order[lo]]
        hi = lo + 1
        while hi < n and ids[order[hi]] == sid:
            hi += 1
        _run(state, profile, params, sid, sts, sx, lo, hi, sc, fl, rc)
        lo = hi
    score = np.empty(n, dtype=np.float64)
    flag = np.empty(n, dtype=np.int8)
    reason = np.empty(n, dtype=np.int8)
    for i in range(n):
        j = order[i]
        score[j] = sc[i]
        flag[j] = fl[i]
        reason[j] = rc[i]
    return score, flag, reason
