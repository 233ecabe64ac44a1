"""Live figures that must hold up against odd data and changing catalogs (found in review).

Real :class:`LiveAnalytics` fed decoded batches as ingest would; no broker or InfluxDB needed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cloud_service.alerts.rules import evaluate, load_rules
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.monitor import silence_bounds
from cloud_service.plans.model import PlanBook, ProductionTarget
from shared.messages import Birth, Reading, SignalKind, SignalSpec, TelemetryBatch

T0 = 1_767_744_000_000
H = 3_600_000
M = 60_000


def birth(*specs: SignalSpec, boot: str = "b") -> Birth:
    return Birth(
        gateway="g",
        site="s",
        boot=boot,
        agent_version="t",
        config_hash="h",
        started_ms=T0,
        signals=list(specs),
    )


def feed(live: LiveAnalytics, t: int, *readings: tuple[str, float]) -> None:
    batch = TelemetryBatch(
        gateway="g", boot="b", seq=1, readings=[Reading(s, t, v) for s, v in readings]
    )
    live.on_batch("s", "g", batch, now_ms=t)


def counter(sid: str, sku: str | None = None) -> SignalSpec:
    return SignalSpec(id=sid, kind=SignalKind.PRODUCTION_COUNT, line="L1", sku=sku, period_s=60.0)


def test_a_counter_reading_negative_counts_nothing_and_breaks_no_figure() -> None:
    live = LiveAnalytics()
    live.on_birth("s", birth(counter("cX", "X"), counter("cY", "Y")))
    live.set_plans(
        PlanBook(
            production=tuple(
                ProductionTarget("s", "L1", T0, T0 + 8 * H, 480.0, sku=s) for s in ("X", "Y")
            )
        )
    )
    for m in range(-10, 120):
        # Y: a 16-bit counter read as signed wraps to -32768 at minute 60
        y = max(m, 0) + 32700.0 if m < 60 else -32768.0 + (m - 60)
        feed(live, T0 + m * M, ("cX", max(m, 0) * 3.0), ("cY", y))
    assert live.refresh(T0 + 120 * M)
    produced = {i.spec.sku: a.produced for i, a in live.adherence_results if i.spec}
    assert produced["X"] == 357.0  # 3 a minute, minutes 0 to 119
    assert 0 <= produced["Y"] <= 120  # the wrap counts nothing, never minus 32,768
    (total,) = live.line_totals
    assert total.figures.mix_drift is not None
    assert math.isfinite(total.figures.mix_drift)
    assert live.refresh_errors == 0


def test_a_weekly_target_counts_the_whole_week_not_the_last_two_days() -> None:
    live = LiveAnalytics()
    live.on_birth("s", birth(counter("c")))
    live.set_plans(
        PlanBook(
            production=(ProductionTarget("s", "L1", T0, T0 + 168 * H, 16800.0, period="week"),)
        )
    )
    for m in range(-10, 96 * 60):  # exactly on plan, 100 an hour, for four days
        feed(live, T0 + m * M, ("c", max(m, 0) * 100 / 60))
    live.refresh(T0 + 96 * H)
    (f,) = live.production_figures
    assert f.produced == pytest.approx(9600, abs=2)  # not the 48 h the minute trail holds
    assert f.attainment is not None
    assert f.attainment > 0.99


def test_a_signal_removed_from_the_gateway_raises_no_no_data_alert() -> None:
    live = LiveAnalytics()
    sensor = [SignalSpec(id=n, kind=SignalKind.SENSOR, period_s=1.0) for n in ("x0", "x1")]
    live.on_birth("s", birth(*sensor))
    for k in range(60):
        feed(live, T0 + k * 1000, ("x0", float(k % 5)), ("x1", float(k % 7)))
    live.on_birth("s", birth(sensor[1], boot="b2"))  # x0 left the gateway's config
    for k in range(60, 20 * 60):
        feed(live, T0 + k * 1000, ("x1", float(k % 7)))
    rules = load_rules()
    inputs = live.inputs(T0 + 20 * M, silence=silence_bounds(rules))
    raised = [(s.key.rule, s.key.subject) for s in evaluate(rules, inputs) if s.raise_met]
    assert raised == []
    live.on_birth("s", birth(*sensor, boot="b3"))  # back again: watched again
    inputs = live.inputs(T0 + 40 * M, silence=silence_bounds(rules))
    raised = [(s.key.rule, s.key.subject) for s in evaluate(rules, inputs) if s.raise_met]
    assert ("no-data", "g:x0") in raised


def sensor_series(hours: int, stuck: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    ts = T0 + np.arange(0, hours * H, M)
    val = 20 + rng.normal(0, 1, ts.size).round(3)
    h = (ts - T0) / H
    for a, b in stuck:
        sel = (h >= a) & (h < b)
        val[sel] = val[np.flatnonzero(sel)[0] - 1]
    return ts, val


def stuck_onsets(live: LiveAnalytics, ts: np.ndarray, val: np.ndarray) -> list[float]:
    onsets: list[float] = []
    was = False
    for t, v in zip(ts.tolist(), val.tolist(), strict=True):
        feed(live, t, ("x", v))
        now = any(f.stuck_since_ms is not None for f in live.inputs(t, silence=[]).signals)
        if now and not was:
            onsets.append((t - T0) / H)
        was = now
    return onsets


def sensor_live() -> LiveAnalytics:
    live = LiveAnalytics()
    live.on_birth("s", birth(SignalSpec(id="x", kind=SignalKind.SENSOR, period_s=60.0)))
    return live


def test_a_stuck_fault_does_not_make_the_next_one_slower_to_see() -> None:
    ts, val = sensor_series(80, [(30, 40), (50, 80)])
    first, second = stuck_onsets(sensor_live(), ts, val)
    assert 30 < first < 31
    assert 50 < second < 51  # not 70 h: the first fault was not learned as a rest


def test_a_restart_rebuilt_from_history_keeps_watching_for_stuck_readings() -> None:
    ts, val = sensor_series(60, [(30, 60)])
    (continuous,) = stuck_onsets(sensor_live(), ts, val)
    restart = T0 + 29 * H
    before = ts < restart
    again = sensor_live()  # a new process: the engine rebuilt from the stored points
    again.rebuild_engine(np.zeros(int(before.sum()), np.int64), ts[before], val[before])
    (restarted,) = stuck_onsets(again, ts[~before], val[~before])
    assert abs(restarted - continuous) < 0.5  # not 24 h of warm-up all over again
