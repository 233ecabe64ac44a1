"""Anomaly kernel: what it detects, and invariants that must hold on any input."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cloud_service.analytics.anomaly import detect
from cloud_service.analytics.codes import Reason
from cloud_service.analytics.kernels import anomaly as ak
from cloud_service.analytics.kernels import anomaly_batch as kb

MIN = 60_000


def _ts(n: int, start: int = 1_700_000_000_000) -> np.ndarray:
    return start + np.arange(n, dtype=np.int64) * MIN


def _noise(n: int, seed: int = 1) -> np.ndarray:
    return 50.0 + np.random.default_rng(seed).normal(0.0, 1.0, n)


def test_spike_is_flagged_with_its_reason() -> None:
    x = _noise(1000)
    x[700] += 40.0
    det = detect(_ts(x.size), x)
    assert det.flag[700] == 1
    assert det.reason[700] == Reason.SPIKE
    assert det.flag[200:700].sum() == 0  # quiet noise after warm-up: nothing


def test_level_shift_is_flagged_soon_after_it_starts() -> None:
    x = _noise(1200, seed=2)
    x[800:] += 6.0  # 6 sigma: sustained
    det = detect(_ts(x.size), x)
    hits = np.flatnonzero(det.flag[800:])
    assert hits.size
    assert hits[0] < 10
    assert det.flag[200:800].sum() == 0


def test_flatline_after_a_moving_signal() -> None:
    x = _noise(1000, seed=3)
    x[600:700] = x[600]
    det = detect(_ts(x.size), x)
    hits = np.flatnonzero(det.flag[600:700]) + 600
    assert hits.size == 1
    assert det.reason[hits[0]] == Reason.FLATLINE
    assert hits[0] - 600 <= ak.FLAT_N + 1


def test_constant_signal_never_flags() -> None:
    det = detect(_ts(2000), np.full(2000, 45.0))
    assert det.flag.sum() == 0
    assert (det.score == 0).all()


def test_counter_reset_and_stall() -> None:
    inc = np.random.default_rng(4).poisson(5.0, 600).astype(np.float64) + 1.0
    total = np.cumsum(inc)
    total[400:] -= total[399]  # the counter restarted at 400
    det = detect(_ts(total.size), total, kind="counter")
    assert det.flag[400] == 1
    assert det.reason[400] == Reason.COUNTER_RESET
    assert det.flag[200:400].sum() == 0

    state, profile = ak.new_state(1)
    params = ak.default_params(1)
    params[0, ak.P_KIND] = ak.KIND_COUNTER
    params[0, ak.P_RUNNING] = 1.0
    flat = np.cumsum(inc)
    flat[500:] = flat[499]  # stopped while the plan says running
    _, fl, rc = ak.detect_series(state, profile, params, 0, _ts(flat.size), flat)
    hits = np.flatnonzero(fl[500:]) + 500
    assert hits.size
    assert rc[hits[0]] == Reason.COUNTER_STALLED


def test_nan_values_are_passed_over() -> None:
    x = _noise(500)
    y = x.copy()
    y[300] = np.nan
    a = detect(_ts(500), x)
    b = detect(_ts(500), y)
    assert b.score[300] == 0
    assert b.flag[300] == 0
    # the state is unaffected: everything before is identical
    np.testing.assert_array_equal(a.score[:300], b.score[:300])


def test_sensitivity_flags_more_readily() -> None:
    x = _noise(1000, seed=5)
    x[600] = 54.0  # 4 sigma off the mean: |z| about 5, under the default bar of 7, over 3.5
    normal = detect(_ts(x.size), x)
    keen = detect(_ts(x.size), x, sensitivity=2.0)
    assert normal.flag[600] == 0
    assert normal.score[600] < 0.5
    assert keen.score[600] >= 0.5  # anomalous at sensitivity 2 (it may fall in an episode
    assert keen.reason[600] == Reason.SPIKE  # already flagged: 2.8-sigma noise flags too)
    assert keen.flag.sum() >= normal.flag.sum()
    # a spike alone after warm-up is flagged at sensitivity 2, not at 1
    y = _noise(400, seed=5)
    y[250] = 54.0
    assert detect(_ts(y.size), y).flag[250] == 0
    assert detect(_ts(y.size), y, sensitivity=2.0).flag[250] == 1


values = arrays(
    np.float64,
    st.integers(1, 400),
    elements=st.floats(-1e6, 1e6, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(values, st.integers(1, 50), st.integers(0, 50))
def test_invariants(x: np.ndarray, holdoff: int, warmup: int) -> None:
    det = detect(_ts(x.size), x, holdoff=float(holdoff), warmup=float(warmup))
    assert ((det.score >= 0) & (det.score < 1)).all()
    flags = np.flatnonzero(det.flag)
    # a flag means the point is anomalous, after warm-up, and apart from the previous flag
    # unless it is a much stronger disturbance of another kind
    assert (det.score[flags] >= 0.5).all()
    assert (flags >= warmup).all()
    strong = ak.STRONG / (1.0 + ak.STRONG)
    lasting = {int(Reason.SHIFT), int(Reason.LEVEL)}
    for prev, cur in itertools.pairwise(flags):
        if cur - prev <= holdoff:
            assert det.score[cur] >= strong or int(det.reason[cur]) in lasting
            assert det.reason[cur] != det.reason[prev]
    assert set(np.unique(det.reason)) <= {int(r) for r in Reason}
    assert (det.reason[det.score < 0.5] == 0).all()


@settings(max_examples=30, deadline=None)
@given(values, st.integers(1, 399))
def test_splitting_a_series_into_batches_changes_nothing(x: np.ndarray, cut: int) -> None:
    cut = min(cut, x.size)
    ts = _ts(x.size)
    whole = ak.detect_series(*ak.new_state(1), ak.default_params(1), 0, ts, x)
    state, profile = ak.new_state(1)
    params = ak.default_params(1)
    a = ak.detect_series(state, profile, params, 0, ts[:cut], x[:cut])
    b = ak.detect_series(state, profile, params, 0, ts[cut:], x[cut:])
    for full, first, second in zip(whole, a, b, strict=True):
        np.testing.assert_array_equal(full, np.concatenate([first, second]))


def test_parallel_grouped_update_equals_one_series_at_a_time() -> None:
    rng = np.random.default_rng(6)
    n_series, per = 16, 300
    x = rng.normal(0, 1, (n_series, per)).cumsum(axis=1)
    ts = np.tile(_ts(per), n_series)
    state, profile = ak.new_state(n_series)
    params = ak.default_params(n_series)
    series = np.arange(n_series, dtype=np.int64)
    offsets = np.arange(n_series + 1, dtype=np.int64) * per
    sc = np.empty(x.size)
    fl = np.empty(x.size, dtype=np.int8)
    rc = np.empty(x.size, dtype=np.int8)
    kb.update_grouped(state, profile, params, series, offsets, ts, x.ravel(), sc, fl, rc)
    for s in range(n_series):
        one = ak.detect_series(*ak.new_state(1), ak.default_params(1), 0, ts[:per], x[s])
        np.testing.assert_array_equal(one[0], sc[s * per : (s + 1) * per])
        np.testing.assert_array_equal(one[1], fl[s * per : (s + 1) * per])


def test_silence_is_noticed_on_the_clock() -> None:
    state, profile = ak.new_state(2)
    params = ak.default_params(2)
    ak.detect_series(state, profile, params, 0, _ts(50), _noise(50))
    last = int(_ts(50)[-1])
    assert kb.silent_since(state, params, last + 3 * MIN, 5.0)[0] == 0
    gap = kb.silent_since(state, params, last + 10 * MIN, 5.0)
    assert gap[0] == 10.0
    assert gap[1] == 0.0  # never reported: nothing to miss


def test_no_data_offline_marks_the_row_after_a_gap() -> None:
    ts = _ts(400)
    ts[300:] += 30 * MIN
    det = detect(ts, _noise(400))
    assert det.flag[300] == 1
    assert det.reason[300] == Reason.NO_DATA


def test_a_disturbance_that_lasts_raises_one_flag_not_one_per_holdoff() -> None:
    x = _noise(3000, seed=7)
    rng = np.random.default_rng(8)
    x[1000:2200:4] += rng.uniform(8.0, 14.0, 300)  # 1,200 samples of repeated large spikes
    det = detect(_ts(x.size), x)
    hits = np.flatnonzero(det.flag)
    assert hits.size
    assert 1000 <= hits[0] < 1010
    assert np.count_nonzero((hits >= 1000) & (hits < 2200)) == 1  # one episode, one flag
    # calm again for longer than REARM_N and the hold-off: a new incident flags again
    x[2800] += 25.0
    again = detect(_ts(x.size), x)
    assert again.flag[2800] == 1


def test_a_counter_stopped_by_plan_raises_nothing_and_restarts_quietly() -> None:
    inc = np.random.default_rng(9).poisson(5.0, 900).astype(np.float64) + 1.0
    inc[500:700] = 0.0  # the line stops for 200 samples, as planned (running = 0)
    det = detect(_ts(inc.size), np.cumsum(inc), kind="counter")
    assert det.flag[200:].sum() == 0
    assert (det.score[500:700] == 0).all()


def _smooth(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    i = np.arange(n)
    ar = np.zeros(n)
    for k in range(1, n):
        ar[k] = 0.95 * ar[k - 1] + rng.normal()
    return {
        "sine": 100 + 5 * np.sin(i / 10) + rng.normal(0, 1, n),
        "slow sine": 100 + 5 * np.sin(i / 50) + rng.normal(0, 1, n),
        "ramp": 100 + 0.1 * i + rng.normal(0, 1, n),
        "ar1": 100 + ar,
    }


def test_what_the_shift_statistic_summed_in_warm_up_raises_no_flag_at_its_end() -> None:
    # smooth signals: the CUSUM built up while level and scale were settling once flagged a
    # "shift" at exactly the first point after warm-up, on every such signal
    warmup = int(ak.DEFAULT_WARMUP)
    for name, x in _smooth(400).items():
        det = detect(_ts(x.size), x)
        assert det.flag[warmup : warmup + 10].sum() == 0, name


def test_a_strong_disturbance_of_another_kind_is_flagged_during_an_episode() -> None:
    # a slow swing keeps the shift statistic busy (no calm, no new episode); a spike many times
    # its threshold is another incident and must not be hidden by it
    x = _smooth(700)["slow sine"]
    x[300] += 500.0
    det = detect(_ts(x.size), x)
    assert det.flag[300] == 1
    assert det.reason[300] == Reason.SPIKE
    first = np.flatnonzero(det.flag)[0]
    assert 0 < 300 - first < ak.DEFAULT_HOLDOFF  # inside the swing's episode and its hold-off


def test_a_lasting_step_soon_after_a_spike_is_flagged() -> None:
    # a spike, calm again, then a permanent step inside the spike's hold-off: the step was
    # never flagged (its first point tied the spike's record, and by the end of the hold-off
    # the records had learnt it); a lasting change after a transient that calmed down is news
    rng = np.random.default_rng(11)
    for gap in (60, 100, 200):
        x = 20.0 + rng.normal(0.0, 0.5, 1600)
        x[1000 - gap] = 40.0
        x[1000:] += 20.0
        det = detect(_ts(x.size), x)
        hits = np.flatnonzero(det.flag).tolist()
        assert hits[0] == 1000 - gap, gap
        assert any(1000 <= h < 1010 for h in hits), (gap, hits)
    # the same spike repeated inside the hold-off stays one incident
    y = 20.0 + rng.normal(0.0, 0.5, 1600)
    y[900] = y[1000] = 40.0
    assert np.flatnonzero(detect(_ts(y.size), y).flag).tolist() == [900]
