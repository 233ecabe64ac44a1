"""Streaming anomaly detection kernel: per-series state in arrays, one pass per point.

O(1) memory per series (34 floats and a 48-bin time-of-day profile), no history buffer: what
the service can afford for 100k signals at ingest rate. Batch entry points: ``anomaly_batch``.

Per point, with a robust predictor (an EWMA level, or the time-of-day profile once it explains
the signal better) and a robust scale (EWMA of Huber-clipped absolute residuals, floored at
``SCALE_FLOOR`` times the slow unclipped mean absolute residual, so that a quiet stretch cannot
make the next ordinary wiggle look infinitely far):

* spike / level: ``|z|`` against ``Z_THRESHOLD`` (a spike when the previous point was normal);
* shift: CUSUM on the clipped ``z`` (slack ``CUSUM_K``), for shifts too small for one point;
* burst: a short EWMA of ``|z|`` against its own long-run mean and spread (Numenta's "anomaly
  likelihood" idea): a run of moderately unusual points;
* flatline: a run of unchanged values where the signal used to move;
* counters (``KIND_COUNTER``): a decrease is a reset; no increase for ``STALL_N`` samples while
  the plan says the line is running is a stall; the other detectors run on the increments of
  samples where the counter moved (a sample without increase is the stall rule's alone).

Spike, shift and burst must also be records: beat the largest value of the same statistic in
the last one to two buckets of ``TAIL_BUCKET`` samples (kept from the end of warm-up), so a
signal's routine extremes are learnt as normal. No data is checked on the clock
(``anomaly_batch.silent_since``), not per point. The sensitivity divides the thresholds, not the
record bars.

Each component is scaled so that 1.0 means "at its threshold"; the point's severity is the
largest, its reason the argmax, its score ``sev / (1 + sev)`` (0.5 at the threshold). A flag is
raised at the onset of an episode: severity reaches 1 after warm-up, more than ``holdoff``
samples after the previous flag, and after the previous episode ended (``REARM_N`` samples in a
row with severity below ``REARM``): one incident, one flag, as alert rules want. The
exceptions: a disturbance of another kind at ``STRONG`` times its threshold is a new incident
at once (a spike during a slow swing the shift statistic is still busy with), and so is a
lasting change (shift or level) once the previous episode has calmed down, hold-off or not (a
step soon after a spike was never flagged: by the end of the hold-off the records had learnt
it). The shift statistic restarts at the end of warm-up. A point older than its series' last
one (a backlog replayed after live data) is scored against the model as it stands, spike/level
only, and not folded into the state (``flag == LATE``; its reason says whether it is beyond the
threshold).
"""

from __future__ import annotations

import math
from typing import Final

import numba as nb
import numpy as np
import numpy.typing as npt

# --- state fields (columns of the state matrix, one row per series) ---------------------------
S_N: Final = 0  # samples seen
S_LAST_TS: Final = 1
S_LAST_X: Final = 2  # last raw value
S_LVL: Final = 3  # EWMA level
S_SCALE: Final = 4  # EWMA |residual| of the level model
S_ERR_LVL: Final = 5  # EWMA |residual| of the level model (slow, for model choice)
S_ERR_TOD: Final = 6  # EWMA |residual| of the time-of-day model (slow)
S_U_SHORT: Final = 7  # short EWMA of |z|
S_U_MEAN: Final = 8  # long EWMA of short EWMA
S_U_VAR: Final = 9  # long EWMA of its squared deviation
S_CUSUM_POS: Final = 10
S_CUSUM_NEG: Final = 11
S_FLAT_RUN: Final = 12  # consecutive unchanged values
S_FLAT_SHARE: Final = 13  # EWMA of "unchanged" indicator
S_SINCE_FLAG: Final = 14  # samples since the last flag
S_DT_MEAN: Final = 15  # EWMA of the sampling period (ms)
S_STALL_RUN: Final = 16  # counters: samples without increase
S_FIRST_TS: Final = 17  # first timestamp (for the time-of-day warm-up)
S_PREV_Z: Final = 18  # |z| of the previous point (spike vs level)
S_TAIL_Z: Final = 19  # max of |z| in the current bucket; +1: in the previous bucket
S_TAIL_Q: Final = 21  # the same for the surprise statistic
S_TAIL_C: Final = 23  # the same for the CUSUM statistic
S_BUCKET: Final = 25  # samples into the current bucket
S_FLAT_BASE: Final = 26  # unchanged-share when the current run began
S_FLAT_SINCE: Final = 27  # timestamp of the first value of the current unchanged run
S_SCORE: Final = 28  # score of the latest point
S_REASON: Final = 29  # reason of the latest point
S_SLOW_LVL: Final = 30  # slow, unclipped EWMA |residual| of the level model (scale floor)
S_SLOW_TOD: Final = 31  # the same for the time-of-day model
S_CALM: Final = 32  # consecutive samples with severity below REARM since the last flag
S_ARMED: Final = 33  # 1 when a new episode may be flagged (0 from a flag until calm again)
S_EPISODE: Final = 34  # reason of the last flag
N_STATE: Final = 35

# --- per-series parameters (columns of the parameter matrix) ------------------------------------
P_THRESHOLD: Final = 0  # sensitivity, divides the thresholds: 1 = default, 2 = twice as easily
P_WARMUP: Final = 1  # samples before any flag
P_HOLDOFF: Final = 2  # samples between two flags
P_KIND: Final = 3  # KIND_GAUGE or KIND_COUNTER
P_PERIOD_MS: Final = 4  # expected sampling period; 0 = learn it
P_RUNNING: Final = 5  # counters: 1 while the plan says the line runs
N_PARAMS: Final = 6

LATE: Final = -1  # flag value of a point older than its series' state (skipped)
KIND_GAUGE: Final = 0
KIND_COUNTER: Final = 1

TOD_BINS: Final = 48  # 30-minute bins of the UTC day
DAY_MS: Final = 86_400_000
INV_DAY_MS: Final = 1.0 / DAY_MS

# --- defaults shared by the live service and the CLI (documented in docs/analytics.md) ---------
DEFAULT_WARMUP: Final = 150.0
DEFAULT_HOLDOFF: Final = 250.0
ALPHA_LEVEL: Final = 0.05
ALPHA_SCALE: Final = 0.04
ALPHA_ERR: Final = 0.005
ALPHA_TOD: Final = 0.15
ALPHA_SHORT: Final = 0.3
ALPHA_LONG: Final = 0.002
CLIP: Final = 4.0  # Huber clip of residuals (in scales) for the level and scale updates
Z_THRESHOLD: Final = 7.0
Z_CAP: Final = 30.0  # |z| saturates: past this, "very far" is all the score can say
CUSUM_K: Final = 0.5
CUSUM_H: Final = 12.0
SURPRISE_THRESHOLD: Final = 6.0
FLAT_N: Final = 12
FLAT_SHARE_MAX: Final = 0.05
STALL_N: Final = 10
TOD_GAIN: Final = 0.7  # the profile must beat the level model by 30% to be used
TAIL_MARGIN: Final = 1.0  # a new record must beat the decayed maximum
TAIL_BUCKET: Final = 2000  # samples per bucket of the sliding maximum
SCALE_FLOOR: Final = 0.25  # the scale never drops below this share of the slow mean |residual|
ALPHA_SLOW: Final = 0.002
REARM: Final = 0.5  # an episode ends after REARM_N samples in a row with severity below this
REARM_N: Final = 50
STRONG: Final = 3.0  # see ``_run``: a new kind of disturbance this far past its threshold
EPS: Final = 1e-12

R_NONE: Final = 0
R_LEVEL: Final = 1
R_SPIKE: Final = 2
R_SHIFT: Final = 3
R_FLATLINE: Final = 4
R_NO_DATA: Final = 5
R_COUNTER_RESET: Final = 6
R_COUNTER_STALLED: Final = 7
R_BURST: Final = 8

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]


def new_state(n_series: int) -> tuple[F64, F64]:
    """Fresh state: ``(state[n, N_STATE], profile[n, TOD_BINS, 2])`` (mean, count per bin).

    One row per series: a series' fields share a few cache lines, which is what a batch with
    a handful of points for each of many series needs (a field-major layout costs one cache
    miss per field and series: measured 3x slower on mixed ingest batches). ``state[:, S_LVL]``
    is still one field across all series.
    """
    state = np.zeros((n_series, N_STATE), dtype=np.float64)
    state[:, S_SINCE_FLAG] = 1e18
    state[:, S_ARMED] = 1.0
    profile = np.zeros((n_series, TOD_BINS, 2), dtype=np.float64)
    return state, profile


def default_params(n_series: int) -> F64:
    params = np.zeros((n_series, N_PARAMS), dtype=np.float64)
    params[:, P_THRESHOLD] = 1.0
    params[:, P_WARMUP] = DEFAULT_WARMUP
    params[:, P_HOLDOFF] = DEFAULT_HOLDOFF
    params[:, P_KIND] = KIND_GAUGE
    return params


@nb.njit(cache=True, inline="always")
def _tail(v: float, cur: float, prev: float, base: float) -> float:
    """``v`` over its bar: the larger of ``base`` and ``TAIL_MARGIN`` × its recent maximum.

    The recent maximum is kept in two buckets of ``TAIL_BUCKET`` samples (a sliding maximum over
    the last one to two buckets): an extreme this signal showed recently is not news, a record
    is. This is what keeps a signal's usual spikes, swings and bursts from raising flag after
    flag while its sensitivity to something new stays high. ``base`` is the threshold divided
    by the series' sensitivity; the record bar is not scaled (a record is news at any
    sensitivity, a repeat is not).
    """
    return v / max(base, TAIL_MARGIN * max(cur, prev))


@nb.njit(cache=True)
def _late_severity(  # noqa: PLR0917
    profile: F64,
    s: int,
    t: int,
    y: float,
    lvl: float,
    scale: float,
    slow_lvl: float,
    err_lvl: float,
    err_tod: float,
    slow_tod: float,
    first_ts: float,
    last_ts: float,
    z_bar: float,
) -> float:
    """``|z|`` over its threshold for a point that arrives after later ones, against the
    predictor and scale the series has now (spike/level only: the sequence statistics need
    the points in order). No record bar: the backlog of an outage is what it was."""
    day = (t + 0.5) * INV_DAY_MS
    b = int((day - math.floor(day)) * TOD_BINS)
    p_mean = profile[s, b, 0]
    p_cnt = profile[s, b, 1]
    if last_ts - first_ts >= 2 * DAY_MS and p_cnt > 0.0 and err_tod < TOD_GAIN * err_lvl:
        r = y - p_mean
        sc = max(err_tod, EPS, SCALE_FLOOR * slow_tod)
    else:
        r = y - lvl
        sc = max(scale, SCALE_FLOOR * slow_lvl)
    if sc <= EPS:
        sc = max(abs(lvl) * 1e-6, 1e-9)
    return float(min(abs(r) / sc, Z_CAP) / z_bar)


@nb.njit(cache=True)
def _run(  # noqa: PLR0912, PLR0915, PLR0917
    state: F64,
    profile: F64,
    params: F64,
    s: int,
    ts: I64,
    xs: F64,
    lo: int,
    hi: int,
    score: F64,
    flag: I8,
    reason: I8,
) -> None:
    """Process points ``lo:hi`` of series ``s`` in order; results go to the same positions.

    The series' state is loaded into locals once and stored back at the end: per point the
    kernel then touches only its inputs, outputs and one time-of-day bin.
    """
    n = state[s, S_N]
    last_ts = state[s, S_LAST_TS]
    last_x = state[s, S_LAST_X]
    lvl = state[s, S_LVL]
    scale = state[s, S_SCALE]
    err_lvl = state[s, S_ERR_LVL]
    err_tod = state[s, S_ERR_TOD]
    u = state[s, S_U_SHORT]
    mu = state[s, S_U_MEAN]
    var = state[s, S_U_VAR]
    cp = state[s, S_CUSUM_POS]
    cn = state[s, S_CUSUM_NEG]
    flat_run = state[s, S_FLAT_RUN]
    flat_share = state[s, S_FLAT_SHARE]
    since = state[s, S_SINCE_FLAG]
    dtm = state[s, S_DT_MEAN]
    stall = state[s, S_STALL_RUN]
    first_ts = state[s, S_FIRST_TS]
    prev_z = state[s, S_PREV_Z]
    bucket = state[s, S_BUCKET]
    flat_base = state[s, S_FLAT_BASE]
    flat_since = state[s, S_FLAT_SINCE]
    last_score = state[s, S_SCORE]
    last_reason = state[s, S_REASON]
    tz0 = state[s, S_TAIL_Z]
    tz1 = state[s, S_TAIL_Z + 1]
    tq0 = state[s, S_TAIL_Q]
    tq1 = state[s, S_TAIL_Q + 1]
    tc0 = state[s, S_TAIL_C]
    tc1 = state[s, S_TAIL_C + 1]
    slow_lvl = state[s, S_SLOW_LVL]
    slow_tod = state[s, S_SLOW_TOD]
    calm = state[s, S_CALM]
    armed = state[s, S_ARMED]
    episode = state[s, S_EPISODE]
    sens = params[s, P_THRESHOLD]
    warmup = params[s, P_WARMUP]
    holdoff = params[s, P_HOLDOFF]
    counter = params[s, P_KIND] == KIND_COUNTER
    running = params[s, P_RUNNING] > 0.0
    # sensitivity divides the thresholds (2: flags twice as readily); records are not scaled
    z_bar = Z_THRESHOLD / sens
    c_bar = CUSUM_H / sens
    q_bar = SURPRISE_THRESHOLD / sens
    flat_bar = FLAT_N / sens
    stall_bar = STALL_N / sens

    for i in range(lo, hi):
        t = ts[i]
        x = xs[i]
        if not math.isfinite(x):
            score[i] = 0.0
            flag[i] = 0
            reason[i] = R_NONE
            continue
        if n > 0.0 and t < last_ts:
            # older than what this series has seen (a backlog replayed after live data): it
            # cannot be folded in, but it is scored against the model as it stands
            sev = _late_severity(profile, s, t, x, lvl, scale, slow_lvl, err_lvl, err_tod,
                                 slow_tod, first_ts, last_ts, z_bar)  # fmt: skip
            if counter or n <= warmup:
                sev = 0.0
            score[i] = sev / (1.0 + sev)
            flag[i] = LATE
            reason[i] = R_SPIKE if sev >= 1.0 else R_NONE
            continue
        if n == 0.0:
            n = 1.0
            last_ts = float(t)
            first_ts = float(t)
            last_x = x
            lvl = 0.0 if counter else x
            since += 1.0
            score[i] = 0.0
            flag[i] = 0
            reason[i] = R_NONE
            continue

        dt = t - last_ts
        if dt > 0.0:
            dtm = dt if dtm <= 0.0 else dtm + 0.05 * (min(dt, 10.0 * dtm) - dtm)
        sev = 0.0
        why = R_NONE

        # counters: resets and stalls, then detect on the increment
        y = x
        if counter:
            inc = x - last_x
            if inc < 0.0:
                sev, why = 1e9, R_COUNTER_RESET
                inc = x  # the counter restarted from zero
            if inc == 0.0 and running:
                stall += 1.0
                if stall / stall_bar > sev:
                    sev, why = stall / stall_bar, R_COUNTER_STALLED
            else:
                stall = 0.0
            y = inc

        # a counter that did not move is judged by the stall rule alone (running) or is
        # expected (stopped): its zero increment is neither scored nor learnt, so a stop
        # is not a "shift" and the rate is still known when the line restarts
        if not (counter and y == 0.0):
            # predictors: the EWMA level, or the time-of-day profile once it explains more
            day = (t + 0.5) * INV_DAY_MS  # +0.5 ms: exact bin edges stay in their bin
            b = int((day - math.floor(day)) * TOD_BINS)
            p_mean = profile[s, b, 0]
            p_cnt = profile[s, b, 1]
            r_lvl = y - lvl
            r_tod = y - p_mean if p_cnt > 0.0 else r_lvl
            use_tod = t - first_ts >= 2 * DAY_MS and p_cnt > 0.0 and err_tod < TOD_GAIN * err_lvl
            # the scale floor: after a quiet stretch the clipped scale has shrunk towards zero; the
            # slow mean |residual| remembers how the signal usually moves, so an ordinary wiggle
            # after a pause is not an infinitely large z
            if use_tod:
                r = r_tod
                sc = max(err_tod, EPS, SCALE_FLOOR * slow_tod)
            else:
                r = r_lvl
                sc = max(scale, SCALE_FLOOR * slow_lvl)
            if sc <= EPS:
                sc = max(abs(lvl) * 1e-6, 1e-9)
            z = r / sc
            az = min(abs(z), Z_CAP)

            # model updates, Huber-clipped so one outlier cannot drag level and scale
            a_r = abs(r_lvl)
            if n == 1.0 and counter:
                lvl = y
                scale = abs(y) * 0.1
            elif n == 1.0:
                lvl = lvl + ALPHA_LEVEL * r_lvl
                scale = a_r
            else:
                lim = CLIP * scale if scale > EPS else a_r
                lvl = lvl + ALPHA_LEVEL * max(min(r_lvl, lim), -lim)
                scale = scale + ALPHA_SCALE * (min(a_r, lim) - scale)
            err_lvl = err_lvl + ALPHA_ERR * (
                min(a_r, CLIP * err_lvl if err_lvl > 0.0 else a_r) - err_lvl
            )
            a_t = abs(r_tod)
            slow_lvl = slow_lvl + ALPHA_SLOW * (a_r - slow_lvl)
            slow_tod = slow_tod + ALPHA_SLOW * (a_t - slow_tod)
            err_tod = err_tod + ALPHA_ERR * (
                min(a_t, CLIP * err_tod if err_tod > 0.0 else a_t) - err_tod
            )
            if p_cnt == 0.0:
                profile[s, b, 0] = y
            else:
                pr = y - p_mean
                if err_tod > 0.0:
                    pr = max(min(pr, CLIP * err_tod), -CLIP * err_tod)
                profile[s, b, 0] = p_mean + ALPHA_TOD * pr
            profile[s, b, 1] = p_cnt + 1.0

            bucket += 1.0
            if bucket >= TAIL_BUCKET:
                bucket = 0.0
                tz1, tz0, tq1, tq0, tc1, tc0 = tz0, 0.0, tq0, 0.0, tc0, 0.0

            # records are kept from the end of warm-up: the statistics' start-up transients are not
            # what the signal normally does
            keep = n > warmup

            # spike / level: a record |z|
            v = _tail(az, tz0, tz1, z_bar)
            if keep:
                tz0 = max(tz0, az)
            if v > sev:
                sev = v
                why = R_SPIKE if prev_z < 0.5 * Z_THRESHOLD else R_LEVEL
            prev_z = az

            # CUSUM on the clipped z: a record shift. It restarts when warm-up ends: what it
            # summed while level and scale were still settling is not a shift of the signal
            if n <= warmup < n + 1.0:
                cp = cn = 0.0
            zc = max(min(z, CLIP), -CLIP)
            cp = max(0.0, cp + zc - CUSUM_K)
            cn = max(0.0, cn - zc - CUSUM_K)
            c = max(cp, cn)
            v = _tail(c, tc0, tc1, c_bar)
            if keep:
                tc0 = max(tc0, c)
            if v > sev:
                sev, why = v, R_SHIFT

            # burst (anomaly likelihood): a record run of unusual points
            u = u + ALPHA_SHORT * (min(az, 2.0 * CLIP) - u)
            q = (u - mu) / math.sqrt(var + 1e-4)
            if n > 10.0:
                v = _tail(q, tq0, tq1, q_bar)
                if keep:
                    tq0 = max(tq0, q)
                if v > sev:
                    sev, why = v, R_BURST
            d = u - mu
            mu = mu + ALPHA_LONG * d
            var = (1.0 - ALPHA_LONG) * (var + ALPHA_LONG * d * d)

        # flatline: stuck where the signal used to move (a counter that does not move is the
        # stall rule's: stalled while running, expected while stopped)
        if x == last_x:
            if flat_run == 0.0:
                # judge the run by how the signal behaved before it (a signal flat from the
                # start has no "before": never a flatline)
                flat_base = flat_share if n > 2 * FLAT_N else 1.0
                flat_since = last_ts
            flat_run += 1.0
            stuck = flat_base < FLAT_SHARE_MAX and n > FLAT_N and not counter
            if stuck and flat_run / flat_bar > sev:
                sev, why = flat_run / flat_bar, R_FLATLINE
            flat_share += 0.01 * (1.0 - flat_share)
        else:
            flat_run = 0.0
            flat_share -= 0.01 * flat_share

        if dt > 0.0:
            last_ts = float(t)
        last_x = x
        n += 1.0
        since += 1.0
        # episodes: after a flag, the next one needs REARM_N calm samples in a row first (and
        # the hold-off), so a signal that stays disturbed raises one flag, not one per hold-off
        if sev < REARM:
            calm += 1.0
            if calm >= REARM_N:
                armed = 1.0
        else:
            calm = 0.0
        fl = 0
        # a much stronger disturbance of another kind (a spike during a slow swing the shift
        # statistic is still busy with) is a new incident: flagged within the episode and
        # the hold-off, or a signal that never calms down would hide it
        new = armed > 0.0 and since > holdoff
        if sev >= STRONG and why != episode:
            new = True
        if armed > 0.0 and why in (R_SHIFT, R_LEVEL) and why != episode:
            new = True  # a lasting change after a transient that had calmed down
        if sev >= 1.0 and n > warmup and new:
            fl = 1
            episode = float(why)
            since = 0.0
            calm = 0.0
            armed = 0.0
        last_score = sev / (1.0 + sev)
        last_reason = why if sev >= 1.0 else R_NONE
        score[i] = last_score
        flag[i] = fl
        reason[i] = last_reason

    state[s, S_N] = n
    state[s, S_LAST_TS] = last_ts
    state[s, S_LAST_X] = last_x
    state[s, S_LVL] = lvl
    state[s, S_SCALE] = scale
    state[s, S_ERR_LVL] = err_lvl
    state[s, S_ERR_TOD] = err_tod
    state[s, S_U_SHORT] = u
    state[s, S_U_MEAN] = mu
    state[s, S_U_VAR] = var
    state[s, S_CUSUM_POS] = cp
    state[s, S_CUSUM_NEG] = cn
    state[s, S_FLAT_RUN] = flat_run
    state[s, S_FLAT_SHARE] = flat_share
    state[s, S_SINCE_FLAG] = since
    state[s, S_DT_MEAN] = dtm
    state[s, S_STALL_RUN] = stall
    state[s, S_FIRST_TS] = first_ts
    state[s, S_PREV_Z] = prev_z
    state[s, S_BUCKET] = bucket
    state[s, S_FLAT_BASE] = flat_base
    state[s, S_FLAT_SINCE] = flat_since
    state[s, S_SCORE] = last_score
    state[s, S_REASON] = last_reason
    state[s, S_TAIL_Z] = tz0
    state[s, S_TAIL_Z + 1] = tz1
    state[s, S_TAIL_Q] = tq0
    state[s, S_TAIL_Q + 1] = tq1
    state[s, S_TAIL_C] = tc0
    state[s, S_TAIL_C + 1] = tc1
    state[s, S_SLOW_LVL] = slow_lvl
    state[s, S_SLOW_TOD] = slow_tod
    state[s, S_CALM] = calm
    state[s, S_ARMED] = armed
    state[s, S_EPISODE] = episode


@nb.njit(cache=True)
def detect_series(  # noqa: PLR0917
    state: F64, profile: F64, params: F64, s: int, ts: I64, x: F64
) -> tuple[F64, I8, I8]:
    """Run series ``s`` over ``ts``/``x`` in order; return ``(score, flag, reason)`` arrays."""
    n = ts.size
    score = np.empty(n, dtype=np.float64)
    flag = np.empty(n, dtype=np.int8)
    reason = np.empty(n, dtype=np.int8)
    _run(state, profile, params, s, ts, x, 0, n, score, flag, reason)
    return score, flag, reason
