"""The live analytics engine: per-series state in memory, batch updates from the ingest stream.

Series are small integers (the ingest's catalog maps signal ids to them); state is a float
matrix with one row per series (:mod:`.kernels.anomaly`), grown by doubling. ``update`` takes a
batch as it arrives (any mix of series), orders it by series and event time, and runs the
kernel in parallel over series. Points older than what a series has already seen (the backlog
a gateway replays after its live data, on reconnecting) cannot be folded into its state any
more: they are scored against the model as it stands (spike/level: ``ak._late_severity``),
flagged when beyond the threshold, counted (``late``), and always reach the sink as history.
Flags from replayed (``historical``) batches, or older than ``LIVE_WINDOW_MS``, reach the sink
marked historical so alert rules record them without raising a stale live alert.

Rebuilding from InfluxDB history at start-up is :meth:`AnomalyEngine.rebuild` with the arrays
the storage layer read (queried per series, ascending time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from cloud_service.analytics.kernels import anomaly as ak
from cloud_service.analytics.kernels import anomaly_batch as kb

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
LIVE_WINDOW_MS = 15 * 60_000
#: Up to this many points a batch runs serially (one ingest message: the thread pool and a
#: pass over every series cost more than the work); bigger ones run series in parallel.
SMALL_BATCH = 4096


@dataclass(frozen=True, slots=True)
class AnomalyEvents:
    """Flagged points of one batch (episode onsets), what alert rules consume."""

    series: I64
    ts_ms: I64
    score: F64
    reason: I8  # codes.Reason
    historical: bool  # replayed or older than the live window: record, do not alert


class AnalyticsSink(Protocol):
    """The narrow interface alert rules implement to receive analytics output."""

    def on_anomalies(self, events: AnomalyEvents) -> None: ...

    def on_silence(self, series: I64, periods: F64) -> None:
        """Series silent for ``periods`` expected sampling periods (from :meth:`check_silence`)."""
        ...


@dataclass(frozen=True, slots=True)
class SignalSnapshot:
    """Per series: whether seen, last timestamp, latest score and reason, flat since (-1: moving)
    and the sampling period (configured, else learnt; 0 while unknown)."""

    series: I64
    seen: npt.NDArray[np.bool_]
    last_seen_ms: I64
    score: F64
    reason: I8
    stuck_since_ms: I64
    period_ms: F64


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """Per input point, in input order: score, flag, reason; ``late`` points were not folded
    into the state (they are scored against it as it stands, spike/level only).

    ``scored`` is False for points without a finite value, and for late points of counters
    (an increment needs the point before): their score, flag and reason are 0 and say nothing.
    """

    score: F64
    flag: I8
    reason: I8
    late: int
    scored: npt.NDArray[np.bool_]


class AnomalyEngine:
    def __init__(self, capacity: int = 1024, sink: AnalyticsSink | None = None) -> None:
        self.sink = sink
        self.state, self.profile = ak.new_state(max(capacity, 1))
        self.params = ak.default_params(max(capacity, 1))
        self.late_total = 0
        # result arrays a rebuild reuses from chunk to chunk (its results are not kept)
        self._scratch = (np.empty(0), np.empty(0, np.int8), np.empty(0, np.int8))

    @property
    def capacity(self) -> int:
        return int(self.state.shape[0])

    def _ensure(self, max_id: int) -> None:
        if max_id < self.capacity:
            return
        new = max(self.capacity * 2, max_id + 1)
        state, profile = ak.new_state(new)
        params = ak.default_params(new)
        old = self.capacity
        state[:old] = self.state
        profile[:old] = self.profile
        params[:old] = self.params
        self.state, self.profile, self.params = state, profile, params

    def configure(
        self,
        series: npt.ArrayLike,
        *,
        sensitivity: float | None = None,
        warmup: float | None = None,
        holdoff: float | None = None,
        counter: bool | None = None,
        period_ms: float | None = None,
    ) -> None:
        """Per-signal settings (sensitivity 1 = default; >1 flags more readily)."""
        ids = _ids(series)
        if ids.size == 0:
            return
        self._ensure(int(ids.max()))
        if sensitivity is not None:
            if sensitivity <= 0:
                raise ValueError("sensitivity must be positive")
            self.params[ids, ak.P_THRESHOLD] = sensitivity
        if warmup is not None:
            self.params[ids, ak.P_WARMUP] = warmup
        if holdoff is not None:
            self.params[ids, ak.P_HOLDOFF] = holdoff
        if counter is not None:
            self.params[ids, ak.P_KIND] = ak.KIND_COUNTER if counter else ak.KIND_GAUGE
        if period_ms is not None:
            self.params[ids, ak.P_PERIOD_MS] = period_ms

    def set_running(self, series: npt.ArrayLike, running: npt.ArrayLike) -> None:
        """What the plan says now: a counter that does not move while running is stalled."""
        ids = _ids(series)
        if ids.size:
            self._ensure(int(ids.max()))
            self.params[ids, ak.P_RUNNING] = np.asarray(running, dtype=bool)

    def update(
        self,
        series: npt.ArrayLike,
        ts_ms: npt.ArrayLike,
        values: npt.ArrayLike,
        *,
        historical: bool = False,
        now_ms: int | None = None,
        reuse: bool = False,
    ) -> UpdateResult:
        """Fold a batch into the state; notify the sink of flags; results in input order.

        ``reuse``: the result arrays are the engine's scratch, valid until the next such call
        (for a rebuild, which keeps none of them).
        """
        ids = _ids(series)
        ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
        x = np.ascontiguousarray(values, dtype=np.float64)
        if not ids.shape == ts.shape == x.shape:
            raise ValueError("series, ts_ms and values must have the same length")
        if ids.size == 0:
            return UpdateResult(
                np.zeros(0), np.zeros(0, np.int8), np.zeros(0, np.int8), 0, np.zeros(0, bool)
            )
        self._ensure(int(ids.max()))
        if ids.size <= SMALL_BATCH:
            score, flag, reason = kb.update_small(self.state, self.profile, self.params, ids, ts, x)
        else:
            score, flag, reason = self._outputs(ids.size, reuse)
            kb.update_batch_into(
                self.state, self.profile, self.params, ids, ts, x, score, flag, reason
            )
        late = flag == ak.LATE
        n_late = int(late.sum())
        if n_late:
            flag[late] = reason[late] != ak.R_NONE
            self.late_total += n_late
        if self.sink is not None:
            hit = np.flatnonzero(flag)
            if n_late and not historical:  # late flags are history whatever their age
                self._emit(ids, ts, score, reason, hit[late[hit]], True)
                hit = hit[~late[hit]]
            if hit.size:
                now = int(time.time() * 1000) if now_ms is None else now_ms
                live = ts[hit] >= now - LIVE_WINDOW_MS
                if not historical and not live.all():
                    # split: recent flags are live, the rest are history
                    self._emit(ids, ts, score, reason, hit[~live], True)
                    self._emit(ids, ts, score, reason, hit[live], False)
                else:
                    self._emit(ids, ts, score, reason, hit, historical)
        scored = np.isfinite(x)
        if n_late:
            scored &= ~(late & (self.params[ids, ak.P_KIND] == ak.KIND_COUNTER))
        return UpdateResult(score, flag, reason, n_late, scored)

    def _emit(  # noqa: PLR0917
        self, sid: I64, sts: I64, sc: F64, rc: I8, idx: I64, historical: bool
    ) -> None:
        if idx.size and self.sink is not None:
            self.sink.on_anomalies(AnomalyEvents(sid[idx], sts[idx], sc[idx], rc[idx], historical))

    def rebuild(self, series: npt.ArrayLike, ts_ms: npt.ArrayLike, values: npt.ArrayLike) -> int:
        """Replay stored history into the state (no live alerts); returns points folded in."""
        result = self.update(series, ts_ms, values, historical=True, reuse=True)
        return int(np.asarray(series).size) - result.late

    def _outputs(self, n: int, reuse: bool) -> tuple[F64, I8, I8]:
        if not reuse:
            return np.empty(n), np.empty(n, np.int8), np.empty(n, np.int8)
        if self._scratch[0].size < n:
            self._scratch = (np.empty(n), np.empty(n, np.int8), np.empty(n, np.int8))
        score, flag, reason = self._scratch
        return score[:n], flag[:n], reason[:n]

    def snapshot(self, series: npt.ArrayLike) -> SignalSnapshot:
        """Latest figures per series, for the alert rules' inputs (``alerts.inputs``)."""
        ids = _ids(series)
        if ids.size:
            self._ensure(int(ids.max()))
        st = self.state[ids]
        seen = st[:, ak.S_N] > 0
        stuck = seen & (st[:, ak.S_FLAT_RUN] >= ak.FLAT_N)
        period = np.where(
            self.params[ids, ak.P_PERIOD_MS] > 0,
            self.params[ids, ak.P_PERIOD_MS],
            st[:, ak.S_DT_MEAN],
        )
        return SignalSnapshot(
            series=ids,
            seen=seen,
            last_seen_ms=st[:, ak.S_LAST_TS].astype(np.int64),
            score=st[:, ak.S_SCORE].copy(),
            reason=st[:, ak.S_REASON].astype(np.int8),
            stuck_since_ms=np.where(stuck, st[:, ak.S_FLAT_SINCE], -1).astype(np.int64),
            period_ms=period,
        )

    def check_silence(self, now_ms: int, factor: float = 5.0) -> tuple[I64, F64]:
        """Series silent for more than ``factor`` sampling periods, and for how many periods."""
        gap = kb.silent_since(self.state, self.params, now_ms, factor)
        ids = np.flatnonzero(gap).astype(np.int64)
        if ids.size and self.sink is not None:
            self.sink.on_silence(ids, gap[ids])
        return ids, gap[ids]


def _ids(series: npt.ArrayLike) -> I64:
    ids = np.ascontiguousarray(series, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError("series ids must be 1-D")
    if ids.size and ids.min() < 0:
        raise ValueError("series ids must not be negative")
    return ids


def warm_up() -> float:
    """Compile (or load from the on-disk cache) every kernel; returns the seconds it took.

    Call once at start-up so the first ingest batch does not pay for compilation.
    """
    from cloud_service.analytics.kernels import auto as ka  # noqa: PLC0415
    from cloud_service.analytics.kernels import depletion as kd  # noqa: PLC0415
    from cloud_service.analytics.kernels import intermittent as ki  # noqa: PLC0415
    from cloud_service.analytics.kernels import plan as kp  # noqa: PLC0415
    from cloud_service.analytics.kernels import smoothing as ks  # noqa: PLC0415

    t0 = time.perf_counter()
    eng = AnomalyEngine(2)
    ts = np.arange(4, dtype=np.int64) * 60_000
    eng.update(np.array([0, 0, 1, 1]), ts, np.array([1.0, 2.0, 3.0, 4.0]), now_ms=0)
    st, pr = ak.new_state(2)
    kb.update_batch(st, pr, ak.default_params(2), np.array([0, 1]), ts[:2], np.ones(2))
    eng.check_silence(10**9)
    st, pr = ak.new_state(1)
    ak.detect_series(st, pr, ak.default_params(1), 0, ts, np.ones(4))
    y = np.array([0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 1.0])
    ks.ses_level(y, 0.1)
    ks.ses_fitted(y, 0.1)
    ks.ses_optimal_alpha(y, 0.1, 0.3, 5)
    ks.holt_optimal(y, np.array([0.1, 0.2]))
    ki.croston(y, 0.1, 1.0)
    ki.tsb(y, 0.1, 0.1)
    ki.adida(y, 30)
    ka.auto_forecast_many(y.reshape(2, 4))
    e = np.zeros((1, 0))
    lv = np.linspace(100.0, 50.0, 200).reshape(1, 200)
    kd.depletion_many(lv, e, e, np.ones(1), np.ones(1), np.zeros(1), 1.64, 10, 24)
    kd.depletion_one(lv[0], e[0], e[0], 1.0, 1.0, 0.0, 1.64, 10, 24)
    kp.attainment_many(np.ones(1), np.ones(1), np.ones(1), np.ones(1), np.ones(1))
    kp.produced_between(ts, np.ones(4), 0, 10)
    kp.mix_drift(np.ones(2), np.ones(2))
    return time.perf_counter() - t0
