"""Analytics outputs to InfluxDB and history back: lines, and round trips through real influxd."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

import numpy as np
import pytest

from cloud_service.analytics import storage as st
from cloud_service.analytics.codes import DemandClass, Model, Reason
from cloud_service.analytics.depletion import DepletionResult, analyze
from cloud_service.analytics.engine import AnomalyEngine
from cloud_service.analytics.plan import Adherence, DemandVsPlan
from cloud_service.storage.base import Series
from cloud_service.storage.errors import QueryError
from cloud_service.storage.influx import InfluxSettings, InfluxStore
from cloud_service.storage.line_protocol import series_key
from firmware_sim.stack import InfluxServer

T0 = 1_790_000_000_000
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
TAGS = {"site": "plant-1", "gateway": "gw-1", "signal": "lc-7", "sku": "SKU-1", "line": ""}


def _result(**over: object) -> DepletionResult:
    base: dict[str, object] = {
        "as_of_ms": T0,
        "stock": 120.0,
        "rate_per_hour": 2.5,
        "trend_per_hour": 0.0,
        "demand_class": DemandClass.SMOOTH,
        "model": Model.SES,
        "noise": 0.3,
        "stockout_ms": (T0 + 40 * HOUR, T0 + 48 * HOUR, None),
        "safety_ms": (T0 + 30 * HOUR, T0 + 36 * HOUR, T0 + 44 * HOUR),
        "reorder_by_ms": T0 - 2 * HOUR,
        "reorder_qty": 300.0,
    }
    base.update(over)
    return DepletionResult(**base)  # type: ignore[arg-type]


# --- lines, no server -------------------------------------------------------------------------


def test_output_key_uses_the_readings_tags_and_refuses_others() -> None:
    assert st.output_key(st.ANOMALY, TAGS) == (
        "anomaly,gateway=gw-1,signal=lc-7,site=plant-1,sku=SKU-1"
    )
    with pytest.raises(ValueError, match="unknown tag keys"):
        st.output_key(st.ANOMALY, {"site": "s", "unit": "kg"})


def test_anomaly_lines_filter_by_score_keep_flags_and_skip_late() -> None:
    keys = [st.output_key(st.ANOMALY, {"site": "s", "signal": f"x{i}"}) for i in range(2)]
    lines = st.anomaly_lines(
        keys,
        series=[0, 1, 0, 1],
        ts_ms=[T0, T0, T0 + MIN, T0 + MIN],
        score=[0.1, 0.7, 0.2, 0.0],
        flag=[0, 1, 1, -1],
        reason=[0, Reason.SPIKE, Reason.SHIFT, 0],
        min_score=0.5,
    )
    assert lines == [
        f"anomaly,signal=x1,site=s score=0.7,flag=1i,reason=2i {T0}",
        f"anomaly,signal=x0,site=s score=0.2,flag=1i,reason=3i {T0 + MIN}",  # flagged: kept
    ]
    with pytest.raises(ValueError, match="no key"):
        st.anomaly_lines(keys, [2], [T0], [0.9], [1], [2])


def test_depletion_line_leaves_unknown_figures_out() -> None:
    ln = st.depletion_line({"site": "s", "sku": "k"}, _result())
    assert ln is not None
    head, fields, ts = ln.split(" ")
    assert head == "depletion,site=s,sku=k"
    assert ts == str(T0)
    parsed = dict(f.split("=") for f in fields.split(","))
    assert parsed["stockout_p10_h"] == "40.0"
    assert parsed["stockout_p50_h"] == "48.0"
    assert "stockout_p90_h" not in parsed  # beyond the horizon: absent, not NaN
    assert parsed["reorder_in_h"] == "-2.0"  # order now
    assert parsed["demand_class"] == "0i"
    assert parsed["model"] == "0i"


def test_plan_line_takes_whatever_figures_exist() -> None:
    adh = Adherence(50.0, 80.0, 0.625, 20.0, 130.0, 0.8125, 35.0)
    ln = st.plan_line({"site": "s", "line": "l1", "sku": "k"}, T0, adherence=adh, mix_drift=0.1)
    assert ln is not None
    assert ln.startswith("plan_adherence,line=l1,site=s,sku=k produced=50.0,")
    assert "mix_drift=0.1" in ln
    nan_only = DemandVsPlan(0.0, 0.0, 0.0, float("nan"), 0.0)
    ln = st.plan_line({"site": "s"}, T0, demand=nan_only)
    assert ln is not None
    assert "demand_ratio" not in ln
    assert st.plan_line({"site": "s"}, T0) is None


class _TruncatingStore:
    """Answers like influxd with a max-row-limit: windows longer than ``limit_ms`` are cut."""

    def __init__(self, points: Mapping[int, float], limit_ms: int) -> None:
        self.points = dict(sorted(points.items()))
        self.limit_ms = limit_ms
        self.queries: list[tuple[int, int]] = []

    async def query(self, q: str, *, epoch: str = "ms") -> list[Series]:
        lo = int(q.split("time >= ")[1].split("ms", maxsplit=1)[0])
        hi = int(q.split("time < ")[1].split("ms", maxsplit=1)[0])
        self.queries.append((lo, hi))
        if hi - lo > self.limit_ms:
            raise QueryError("statement 0 was truncated by the server (max-row-limit)")
        rows = [[t, v] for t, v in self.points.items() if lo <= t < hi]
        if not rows:
            return []
        return [Series("stock_level", {"site": "s", "sku": ""}, ("time", "value"), rows)]

    async def write(self, lines: bytes | Sequence[str], *, precision: str = "ms") -> None:
        raise AssertionError("read only")

    async def ensure_database(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


async def test_a_truncated_window_is_read_again_in_halves_in_time_order() -> None:
    pts = {T0 - k * HOUR: float(k) for k in range(48)}
    store = _TruncatingStore(pts, limit_ms=7 * HOUR)
    hist = await st.read_history(store, "stock_level", days=2, now_ms=T0)
    assert hist.tags == [{"site": "s"}]
    np.testing.assert_array_equal(hist.ts_ms, sorted(t for t in pts if t >= T0 - 2 * DAY))
    assert (np.diff(hist.ts_ms) > 0).all()
    np.testing.assert_array_equal(hist.values, [pts[t] for t in hist.ts_ms.tolist()])
    assert any(hi - lo <= 7 * HOUR for lo, hi in store.queries)
    tiny = _TruncatingStore(pts, limit_ms=0)
    with pytest.raises(QueryError):
        await st.read_history(tiny, "stock_level", days=1, now_ms=T0)


# --- real influxd -----------------------------------------------------------------------------


@asynccontextmanager
async def _store(influxd: InfluxServer, name: str) -> AsyncIterator[InfluxStore]:
    store = InfluxStore(InfluxSettings(url=influxd.url, database=name))
    try:
        await store.ensure_database()
        yield store
    finally:
        await store.aclose()


def _by_time(series: list[Series]) -> dict[int, dict[str, object]]:
    return {int(r["time"]): r for s in series for r in s.rows()}


@pytest.mark.integration
async def test_engine_scores_written_and_read_back_exactly(
    influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    rng = np.random.default_rng(1)
    n = 600
    x = 50.0 + rng.normal(0.0, 1.0, n)
    x[500] += 40.0
    ts = T0 + np.arange(n, dtype=np.int64) * MIN
    ids = np.zeros(n, dtype=np.int64)
    x[10] = np.nan  # not scored: not written
    engine = AnomalyEngine(4)
    result = engine.update(ids, ts, x, historical=True)
    async with _store(influxd, unique_name("an")) as store:
        writer = st.AnalyticsWriter(store)
        with pytest.raises(ValueError, match="set_series"):
            await writer.update(ids, ts, result)
        writer.set_series(0, TAGS)
        out = await writer.update(ids, ts, result)
        assert out.written == n - 1
        assert not out.rejected
        got = _by_time(await store.query('SELECT * FROM "anomaly"'))
    assert len(got) == n - 1
    assert int(ts[10]) not in got
    for i in (0, 200, 500, 599):
        row = got[int(ts[i])]
        assert row["score"] == result.score[i]  # exact: shortest round-trip floats
        assert row["flag"] == result.flag[i]
        assert row["reason"] == result.reason[i]
        assert row["signal"] == "lc-7"
        assert "line" not in row  # empty tag: not written
    assert got[int(ts[500])]["flag"] == 1
    assert got[int(ts[500])]["reason"] == Reason.SPIKE


@pytest.mark.integration
async def test_depletion_and_plan_points_round_trip(
    influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    hours = np.arange(24 * 20, dtype=np.int64)
    level = 1000.0 - 2.0 * hours + np.random.default_rng(2).normal(0, 0.5, hours.size)
    res = analyze(T0 + hours * HOUR, level, lead_time_h=48.0, safety_stock=50.0)
    tags = {"site": "plant-1", "sku": "SKU-1", "location": "wh-2"}
    async with _store(influxd, unique_name("dp")) as store:
        writer = st.AnalyticsWriter(store)
        assert (await writer.depletion([(tags, res)])).written == 1
        adh = Adherence(50.0, 80.0, 0.625, 20.0, 130.0, 0.8125, float("inf"))
        out = await writer.plan({"site": "plant-1", "line": "l1"}, T0, adherence=adh)
        assert out.written == 1
        dep = (await store.query('SELECT * FROM "depletion"'))[0].rows()[0]
        plan = (await store.query('SELECT * FROM "plan_adherence"'))[0].rows()[0]
    assert dep["time"] == res.as_of_ms
    assert dep["location"] == "wh-2"
    assert dep["rate_per_hour"] == res.rate_per_hour
    p50 = res.hours_from(res.as_of_ms)["stockout_p50_h"]
    assert p50 is not None
    assert dep["stockout_p50_h"] == pytest.approx(p50)
    assert dep["demand_class"] == int(res.demand_class)
    assert dep["reorder_qty"] == res.reorder_qty
    assert plan["attainment"] == 0.625
    assert "required_rate_per_hour" not in plan  # infinite: left out (no such field at all)
    assert plan["line"] == "l1"


@pytest.mark.integration
async def test_history_is_read_back_per_series_and_rebuilds_the_engine(
    influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    rng = np.random.default_rng(3)
    n = 3 * 24 * 12  # three days every five minutes
    ts = T0 - 3 * DAY + np.arange(n, dtype=np.int64) * 5 * MIN
    signals = ["lc-1", "lc-2", "lc-3"]
    values = {s: 100.0 + rng.normal(0, 1, n).cumsum() for s in signals}
    lines = []
    for s in signals:
        key = series_key("stock_level", {"site": "p", "gateway": "g", "signal": s, "sku": "k"})
        pairs = zip(ts.tolist(), values[s].tolist(), strict=True)
        lines += [f"{key} value={v!r},q=0i {t}" for t, v in pairs]
        lines.append(f"{key} q=3i {T0 - 1000}")  # a comm failure: no value, not read back
    async with _store(influxd, unique_name("hs")) as store:
        await store.write(lines)
        hist = await st.read_history(store, "stock_level", days=2, now_ms=T0, window_ms=7 * HOUR)
        ids = {"lc-1": 0, "lc-3": 5}
        engine = AnomalyEngine(2)
        folded = await st.rebuild_engine(
            engine,
            store,
            ["stock_level"],
            lambda t: ids.get(t["signal"]),
            days=2,
            now_ms=T0,
        )
    assert sorted(t["signal"] for t in hist.tags) == signals
    assert all(
        t == {"site": "p", "gateway": "g", "signal": t["signal"], "sku": "k"} for t in hist.tags
    )
    keep = ts >= T0 - 2 * DAY
    for k, tags in enumerate(hist.tags):
        sel = hist.series == k
        np.testing.assert_array_equal(hist.ts_ms[sel], ts[keep])
        np.testing.assert_array_equal(hist.values[sel], values[tags["signal"]][keep])
    assert len(hist) == 3 * int(keep.sum())
    assert folded == 2 * int(keep.sum())
    # the same state as replaying the arrays directly
    direct = AnomalyEngine(6)
    direct.rebuild(np.zeros(int(keep.sum()), np.int64), ts[keep], values["lc-1"][keep])
    direct.rebuild(np.full(int(keep.sum()), 5, np.int64), ts[keep], values["lc-3"][keep])
    np.testing.assert_array_equal(engine.state[[0, 5]], direct.state[[0, 5]])
    assert engine.snapshot([1]).seen[0] == np.False_
