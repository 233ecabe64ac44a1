"""How the start-up reads its history from a real influxd: within the server's row limit,
within the point budget whatever is stored, through a failed query, and without writing the
replay's flags back.

- influxd's ``[http] max-row-limit`` (10,000 is a common production setting) counts the rows
  of a whole answer, every series together: each answer asks for fewer (``LIMIT`` per
  signal), and a truncated one is asked again for fewer, never abandoning the rebuild.
- A signal stored denser than announced is read newest first up to its share of the budget.
- A query that fails is retried once; a batch whose reads fail again is left out (logged,
  counted) and the rest of the rebuild goes on.
- The replay re-scores history from a cold state: its flags are not the live engine's, and
  are neither written to InfluxDB nor alerted on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloud_service.analytics.engine import F64, I64
from cloud_service.analytics.storage import ANOMALY
from cloud_service.live import history
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.history import rebuild
from cloud_service.live.outputs import OutputWriter
from cloud_service.live.settings import LiveSettings
from cloud_service.storage.base import Series
from cloud_service.storage.errors import QueryError, StoreUnavailable
from cloud_service.storage.influx import InfluxSettings, InfluxStore
from cloud_service.storage.influxql import drop_database
from firmware_sim.stack.influxd import InfluxServer
from shared.messages import Birth, SignalKind, SignalSpec

pytestmark = pytest.mark.integration

H = 3_600_000
NOW = 1_767_744_000_000 + 20 * 24 * H
SITE, GW = "p1", "g1"
ROW_LIMIT = 1_000


class _RowLimitedInflux(InfluxServer):
    """influxd with ``[http] max-row-limit``: answers longer than that are truncated."""

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text()
        self.config_path.write_text(
            text.replace("[http]\n", f"[http]\n  max-row-limit = {ROW_LIMIT}\n", 1)
        )


@pytest.fixture(scope="module")
def limited_influxd(stack_workdir: Callable[[str], Path]) -> Iterator[InfluxServer]:
    server = _RowLimitedInflux(stack_workdir("influxd-row-limit"))
    server.start()
    yield server
    server.stop()


class _Recording:
    """The store, recording what each query answered (rows, or the error) and failing the
    queries ``fail`` says to fail."""

    def __init__(self, store: InfluxStore, fail: Callable[[str], bool] = lambda _q: False) -> None:
        self.store = store
        self.fail = fail
        self.answers: list[int | str] = []

    async def query(self, q: str, *, epoch: str = "ms") -> list[Series]:
        if self.fail(q):
            self.answers.append("failed")
            raise StoreUnavailable("query timed out", operation="query", attempts=1)
        try:
            found = await self.store.query(q, epoch=epoch)
        except QueryError as exc:
            self.answers.append(str(exc))
            raise
        self.answers.append(sum(len(s.values) for s in found))
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _live(specs: list[SignalSpec], settings: LiveSettings | None = None) -> LiveAnalytics:
    live = LiveAnalytics(settings)
    live.on_birth(
        SITE,
        Birth(gateway=GW, site=SITE, boot="b", agent_version="t", config_hash="h",
              started_ms=NOW - 30 * 24 * H, signals=specs),
    )  # fmt: skip
    return live


def _sensor_lines(sid: str, ts: np.ndarray, measurement: str = "sensor") -> list[str]:
    return [
        f"{measurement},gateway={GW},signal={sid},site={SITE} value={k % 7} {t}"
        for k, t in enumerate(ts.tolist())
    ]


async def test_answers_stay_within_the_server_row_limit(
    limited_influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    """40 sensors at 1 s with 100 s each in the budget (4,000 rows) and 30 stock levels with
    two days of hours (1,470 rows): more than one answer of the server holds (1,000 rows).
    Every signal gets its history; no answer the rebuild kept was truncated."""
    store = InfluxStore(InfluxSettings(url=limited_influxd.url, database=unique_name("db")))
    await store.ensure_database()
    try:
        sensors = [f"s{i}" for i in range(40)]
        stocks = [f"l{i}" for i in range(30)]
        sensor_ts = np.arange(NOW - 300_000, NOW, 1_000)
        stock_ts = np.arange(NOW - 48 * H, NOW, 600_000)
        lines = [line for s in sensors for line in _sensor_lines(s, sensor_ts)]
        lines += [line for s in stocks for line in _sensor_lines(s, stock_ts, "stock_level")]
        await store.write(lines, precision="ms")
        live = _live(
            [SignalSpec(id=s, kind=SignalKind.SENSOR, period_s=1.0) for s in sensors]
            + [
                SignalSpec(id=s, kind=SignalKind.STOCK_LEVEL, sku=s, period_s=600.0) for s in stocks
            ],
            LiveSettings(rebuild_max_points=40 * 100 + 30 * 100),  # 100 points each
        )
        windows = history.engine_windows(live)
        assert {w.window_ms for w in windows} == {100_000, 60_000_000}
        recorded = _Recording(store)
        report = await rebuild(live, recorded, now_ms=NOW)

        assert report.failed_reads == 0
        ids = {i.signal: sid for sid, i in enumerate(live.index.infos)}
        snap = live.engine.snapshot(np.array([ids[s] for s in sensors]))
        assert snap.seen.all()
        assert report.engine_points == 40 * 100 + 30 * 100  # each its newest 100
        for s in stocks:
            trail = live.trail(ids[s])
            assert trail is not None
            assert trail.series()[0].size == 48  # every hour of the two days
        assert all(isinstance(a, str) or a <= ROW_LIMIT for a in recorded.answers)
        truncated = [a for a in recorded.answers if isinstance(a, str)]
        # the limit learned (9,000, then halved down to it; three batches at a time may each
        # meet the same size once), not met again at each slice: about 7,000 rows, 25 queries
        assert len(truncated) <= 2 + 3 * 3
        assert report.queries == len(recorded.answers) <= 40
    finally:
        await store.query(drop_database(store.settings.database))
        await store.aclose()


async def test_a_signal_denser_than_announced_is_read_within_its_share(
    influx_store: InfluxStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two signals announced every 10 min but stored every 10 s (26,280 points each in their
    73 h): under a budget of 1,000 points each is read newest first up to its share, and folds
    are sized by the rows read, not by the points announced."""
    window = 150 * 600_000 + history.PROFILE_MS
    ts = np.arange(NOW - window, NOW, 10_000)
    await influx_store.write(
        [line for s in ("a", "b") for line in _sensor_lines(s, ts)], precision="ms"
    )
    live = _live(
        [SignalSpec(id=s, kind=SignalKind.SENSOR, period_s=600.0) for s in ("a", "b")],
        LiveSettings(rebuild_max_points=1_000),
    )
    folds: list[int] = []
    fold = live.rebuild_engine

    def record(series: I64, ts_ms: I64, values: F64) -> int:
        folds.append(series.size)
        return fold(series, ts_ms, values)

    monkeypatch.setattr(live, "rebuild_engine", record)
    recorded = _Recording(influx_store)
    report = await rebuild(live, recorded, now_ms=NOW)

    assert report.engine_points == 1_000  # 438 + 1 each, and half of what the budget has left
    assert folds == [1_000]
    assert sum(a for a in recorded.answers if isinstance(a, int)) == 1_000  # no more was read
    snap = live.engine.snapshot(np.arange(2))
    assert snap.last_seen_ms.tolist() == [int(ts[-1])] * 2  # the newest


def _three_periods() -> tuple[LiveAnalytics, list[str]]:
    periods = (10, 60, 300)
    live = _live([SignalSpec(id=f"p{p}", kind=SignalKind.SENSOR, period_s=p) for p in periods])
    lines = [
        line
        for p in periods
        for line in _sensor_lines(f"p{p}", np.arange(NOW - 2_000 * p * 1000, NOW, p * 1000))
    ]
    return live, lines


def _raw(q: str) -> bool:
    return q.startswith('SELECT "value" FROM "sensor" WHERE (')


async def test_a_query_that_fails_once_is_asked_again(influx_store: InfluxStore) -> None:
    live, lines = _three_periods()
    await influx_store.write(lines, precision="ms")
    failed: list[str] = []

    def once(q: str) -> bool:
        if _raw(q) and not failed:
            failed.append(q)
            return True
        return False

    recorded = _Recording(influx_store, once)
    report = await rebuild(live, recorded, now_ms=NOW)
    assert failed
    assert report.failed_reads == 0
    assert live.engine.snapshot(np.arange(3)).seen.tolist() == [True] * 3


async def test_a_batch_whose_reads_fail_is_left_out_and_the_rest_goes_on(
    influx_store: InfluxStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The 60 s signal's reads fail every time: it starts without engine history (logged and
    counted), the 10 s and 5 min ones get theirs, and no query is left running."""
    live, lines = _three_periods()
    await influx_store.write(lines, precision="ms")
    recorded = _Recording(influx_store, lambda q: _raw(q) and "'p60'" in q)
    report = await rebuild(live, recorded, now_ms=NOW)

    assert live.engine.snapshot(np.arange(3)).seen.tolist() == [True, False, True]
    assert report.failed_reads == 1
    assert report.signals_without_history == 1
    assert recorded.answers.count("failed") == 2  # asked once again, then left out
    assert "left out" in caplog.text
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_the_replay_writes_no_anomalies_back(influx_store: InfluxStore) -> None:
    """Ten days of a 5-minute signal with a daily cycle and 25 odd readings, replayed at a
    restart: the replay flags some of them from its cold state, but those flags are not the
    live engine's and are neither written to InfluxDB nor kept for the alert rules."""
    p, day = 300_000, 288
    n = 10 * day
    ts = NOW - p * np.arange(n, 0, -1, dtype=np.int64)
    rng = np.random.default_rng(5)
    k = np.arange(n)
    x = 50 + 10 * np.sin(2 * np.pi * k / day) + rng.normal(0, 0.5, n)
    for j in rng.choice(np.arange(day, n), 25, replace=False):
        x[j] += rng.choice([-1, 1]) * rng.uniform(3, 12)
    await influx_store.write(
        [
            f"sensor,gateway={GW},signal=t,site={SITE} value={v!r} {t}"
            for t, v in zip(ts.tolist(), x.tolist(), strict=True)
        ],
        precision="ms",
    )
    live = _live([SignalSpec(id="t", kind=SignalKind.SENSOR, period_s=p / 1000)])
    writer = OutputWriter(live, influx_store)
    live.on_events = writer.on_anomalies

    await rebuild(live, influx_store, now_ms=NOW)
    await writer.flush(NOW)

    assert live.replay_onsets > 0  # the replay did flag some
    assert writer.failures == 0
    assert await influx_store.query(f'SELECT * FROM "{ANOMALY}"', epoch="ms") == []
    assert not live.inputs(NOW, silence=[]).signals  # and nothing reaches the rules
