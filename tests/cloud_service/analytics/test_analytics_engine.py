"""Engine: batches in any order, late points, replay without live alerts, silence, warm-up."""

from __future__ import annotations

import numpy as np

from cloud_service.analytics.codes import Reason
from cloud_service.analytics.engine import AnomalyEngine, AnomalyEvents, warm_up
from cloud_service.analytics.kernels import anomaly as ak

MIN = 60_000
NOW = 1_767_225_600_000


class Recorder:
    def __init__(self) -> None:
        self.events: list[AnomalyEvents] = []
        self.silent: list[tuple[list[int], list[float]]] = []

    def on_anomalies(self, events: AnomalyEvents) -> None:
        self.events.append(events)

    def on_silence(self, series: np.ndarray, periods: np.ndarray) -> None:
        self.silent.append((series.tolist(), periods.tolist()))


def _data(n_series: int, per: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_series, dtype=np.int64), per)
    ts = np.tile(NOW - per * MIN + np.arange(per, dtype=np.int64) * MIN, n_series)
    x = rng.normal(10.0, 1.0, ids.size)
    x[ids == 1] += np.where(np.arange(per) == per - 5, 30.0, 0.0)  # a spike near the end
    return ids, ts, x


def test_shuffled_batch_equals_sorted_and_matches_the_kernel() -> None:
    ids, ts, x = _data(5, 400)
    perm = np.random.default_rng(1).permutation(ids.size)
    a = AnomalyEngine(8).update(ids, ts, x, now_ms=NOW)
    b = AnomalyEngine(8).update(ids[perm], ts[perm], x[perm], now_ms=NOW)
    np.testing.assert_array_equal(a.score[perm], b.score)
    np.testing.assert_array_equal(a.flag[perm], b.flag)
    one = ak.detect_series(*ak.new_state(1), ak.default_params(1), 0, ts[:400], x[:400])
    np.testing.assert_array_equal(one[0], a.score[:400])


def test_batches_in_sequence_equal_one_batch() -> None:
    ids, ts, x = _data(3, 300)
    whole = AnomalyEngine().update(ids, ts, x, now_ms=NOW)
    eng = AnomalyEngine()
    first = ts < NOW - 100 * MIN
    r1 = eng.update(ids[first], ts[first], x[first], now_ms=NOW)
    r2 = eng.update(ids[~first], ts[~first], x[~first], now_ms=NOW)
    np.testing.assert_array_equal(whole.score[first], r1.score)
    np.testing.assert_array_equal(whole.score[~first], r2.score)


def test_a_backlog_replayed_after_live_data_is_scored_and_flagged_as_history() -> None:
    # a gateway back from an outage sends its live data first, then the backlog: the backlog
    # is older than the state, so it cannot be folded in, but a spike in it is still found
    rng = np.random.default_rng(0)
    ts = NOW + np.arange(700, dtype=np.int64) * MIN
    x = 10 + rng.normal(0, 1, 700)
    x[550] = 500.0  # during the outage
    rec = Recorder()
    eng = AnomalyEngine(4, sink=rec)
    now = int(ts[-1]) + MIN
    eng.update(np.zeros(500, np.int64), ts[:500], x[:500], now_ms=now)
    eng.update(np.zeros(50, np.int64), ts[650:], x[650:], now_ms=now)  # live, on return
    before = eng.state.copy()
    res = eng.update(np.zeros(150, np.int64), ts[500:650], x[500:650], now_ms=now)
    assert res.late == 150
    assert res.scored.all()
    assert np.flatnonzero(res.flag).tolist() == [50]
    assert res.reason[50] == Reason.SPIKE
    assert res.score[50] > 0.75 > res.score[:50].max()
    np.testing.assert_array_equal(eng.state, before)  # not folded in
    # to the sink as history, even without the batch's historical mark
    assert [(e.historical, e.ts_ms.tolist()) for e in rec.events] == [(True, [int(ts[550])])]
    # a counter's late point has no increment to judge: not scored
    eng.configure([1], counter=True)
    eng.update([1] * 300, ts[:300], np.arange(300.0) * 5, now_ms=now)
    late = eng.update([1], [int(ts[100])], [9999.0], now_ms=now)
    assert late.late == 1
    assert not late.scored[0]
    assert late.flag[0] == 0


def test_late_points_are_skipped_and_counted() -> None:
    eng = AnomalyEngine()
    eng.update([0, 0, 0], [NOW, NOW + MIN, NOW + 2 * MIN], [1.0, 2.0, 3.0], now_ms=NOW)
    before = eng.state.copy()
    res = eng.update([0], [NOW + MIN // 2], [100.0], now_ms=NOW)
    assert res.late == 1
    assert eng.late_total == 1
    assert res.flag.tolist() == [0]
    np.testing.assert_array_equal(eng.state, before)


def test_replay_reaches_the_sink_as_history_and_live_flags_as_live() -> None:
    ids, ts, x = _data(2, 400)
    rec = Recorder()
    eng = AnomalyEngine(sink=rec)
    folded = eng.rebuild(ids, ts, x)
    assert folded == ids.size
    assert rec.events
    assert all(e.historical for e in rec.events)
    rec.events.clear()
    # a live spike on series 0 now (series 1 flagged recently: it is in its hold-off)
    res = eng.update([0, 0], [NOW + MIN, NOW + 2 * MIN], [10.0, 90.0], now_ms=NOW + 2 * MIN)
    assert res.flag.tolist() == [0, 1]
    assert len(rec.events) == 1
    assert not rec.events[0].historical
    assert rec.events[0].series.tolist() == [0]
    assert rec.events[0].reason.tolist() == [Reason.SPIKE]


def test_old_flags_in_a_live_batch_are_history() -> None:
    rec = Recorder()
    eng = AnomalyEngine(sink=rec)
    ids, ts, x = _data(2, 400)
    eng.update(ids, ts, x, now_ms=NOW + 24 * 60 * MIN)  # a day late: nothing is live
    assert rec.events
    assert all(e.historical for e in rec.events)


def test_capacity_grows_and_settings_apply() -> None:
    eng = AnomalyEngine(capacity=2)
    eng.configure([5], sensitivity=2.0, counter=True, period_ms=MIN)
    assert eng.capacity >= 6
    assert eng.params[5, ak.P_THRESHOLD] == 2.0
    assert eng.params[5, ak.P_KIND] == ak.KIND_COUNTER
    eng.set_running([5], [True])
    assert eng.params[5, ak.P_RUNNING] == 1.0


def test_silence_check_notifies_the_sink() -> None:
    rec = Recorder()
    eng = AnomalyEngine(sink=rec)
    eng.configure([0, 1], period_ms=MIN)
    eng.update([0, 1], [NOW, NOW + 9 * MIN], [1.0, 1.0], now_ms=NOW)
    ids, periods = eng.check_silence(NOW + 10 * MIN)
    assert ids.tolist() == [0]
    assert periods.tolist() == [10.0]
    assert rec.silent == [([0], [10.0])]


def test_warm_up_compiles_everything() -> None:
    assert warm_up() >= 0.0


def test_snapshot_reports_latest_score_and_stuck_signal() -> None:
    eng = AnomalyEngine()
    rng = np.random.default_rng(9)
    ts = NOW + np.arange(400, dtype=np.int64) * MIN
    x = rng.normal(10.0, 1.0, 400)
    x[380:] = x[380]  # stuck for the last 20 samples
    eng.update(np.zeros(400, dtype=np.int64), ts, x, now_ms=int(ts[-1]))
    snap = eng.snapshot([0, 3])
    assert snap.seen.tolist() == [True, False]
    assert snap.last_seen_ms[0] == ts[-1]
    assert snap.stuck_since_ms[0] == ts[380]
    assert snap.stuck_since_ms[1] == -1
    assert snap.reason[0] == Reason.FLATLINE
    assert snap.score[0] >= 0.5
    assert snap.period_ms[0] == MIN
