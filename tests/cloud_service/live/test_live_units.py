"""Live analytics without I/O: who reaches the rules, and the bounds the rules imply."""

from __future__ import annotations

import numpy as np

from cloud_service.alerts.rules import evaluate, load_rules, parse_rules
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.history import PROFILE_MS, engine_windows, fair_share
from cloud_service.live.monitor import silence_bounds
from cloud_service.live.settings import LiveSettings
from cloud_service.plans.model import PlanBook, SkuPolicy
from shared.messages import Birth, Quality, Reading, SignalKind, SignalSpec, TelemetryBatch

T0 = 1_767_744_000_000


def _fleet(n: int) -> LiveAnalytics:
    live = LiveAnalytics()
    specs = [SignalSpec(id=f"x{i}", kind=SignalKind.SENSOR, period_s=1.0) for i in range(n)]
    birth = Birth(
        gateway="g", site="s", boot="b", agent_version="t", config_hash="h", started_ms=T0,
        signals=specs,
    )  # fmt: skip
    live.on_birth("s", birth)
    return live


def _feed(live: LiveAnalytics, signals: list[str], t: int, received: int) -> None:
    batch = TelemetryBatch(
        gateway="g", boot="b", seq=1, readings=[Reading(s, t, 1.0 + (t % 7)) for s in signals]
    )
    live.on_batch("s", "g", batch, now_ms=received)


def test_default_rules_bound_silence_at_ten_minutes_and_ten_periods() -> None:
    assert silence_bounds(load_rules()) == [(600_000.0, 10.0)]


def test_silence_bounds_follow_the_rules_match_and_refuse_to_bound_below() -> None:
    any_rule = parse_rules(
        '[[rules]]\nid = "a"\ntype = "no_data"\n'
        'when = [{ metric = "silent_min", op = ">=", value = 3 },'
        ' { metric = "silent_periods", op = ">", value = 20, deadband = 5 }]\n'
    )
    assert silence_bounds(any_rule) == [(180_000.0, 0.0), (0.0, 15.0)]
    below = parse_rules(
        '[[rules]]\nid = "b"\ntype = "no_data"\n'
        'when = [{ metric = "silent_min", op = "<", value = 3 }]\n'
    )
    assert silence_bounds(below) == [(0.0, 0.0)]
    assert silence_bounds(parse_rules('[[rules]]\nid = "c"\ntype = "gateway_offline"\n')) == []


def test_an_ingest_lag_of_seconds_puts_no_signal_through_the_rules() -> None:
    live = _fleet(2000)
    names = [f"x{i}" for i in range(2000)]
    for k in range(30):  # 30 s of 1 Hz data, received on time
        _feed(live, names, T0 + k * 1000, T0 + k * 1000)
    bounds = silence_bounds(load_rules())
    lagging = live.inputs(T0 + 29_000 + 8_000, silence=bounds)  # 8 s behind
    assert lagging.signals == []
    _feed(live, names[1:], T0 + 700_000, T0 + 700_000)  # x0 stays silent for 11 min
    later = live.inputs(T0 + 700_000, silence=bounds)
    assert [f.signal for f in later.signals] == ["x0"]
    assert later.signals[0].last_seen_ms == T0 + 29_000  # its receive time


def test_a_sensor_reporting_only_failures_is_no_data() -> None:
    """A source that fails sends COMM_FAILURE readings without a value: the signal is not
    silent on the wire, but it says nothing; the no-data rule must see it."""
    live = _fleet(2)
    for k in range(60):  # a minute of good data from both
        _feed(live, ["x0", "x1"], T0 + k * 1000, T0 + k * 1000)
    for k in range(60, 15 * 60):  # then x0's source fails for 14 min; x1 stays good
        t = T0 + k * 1000
        failed = TelemetryBatch(
            gateway="g",
            boot="b",
            seq=k,
            readings=[Reading("x0", t, None, int(Quality.COMM_FAILURE))],
        )
        live.on_batch("s", "g", failed, now_ms=t)
        _feed(live, ["x1"], t, t)
    now = T0 + 15 * 60_000
    inputs = live.inputs(now, silence=silence_bounds(load_rules()))
    assert [f.signal for f in inputs.signals] == ["x0"]
    assert inputs.signals[0].last_seen_ms == T0 + 59_000  # its last good reading
    states = [s for s in evaluate(load_rules(), inputs) if s.raise_met]
    assert [(s.key.rule, s.key.subject) for s in states] == [("no-data", "g:x0")]
    assert "Last good reading at" in states[0].message


def test_tracked_subjects_stay_in_the_inputs() -> None:
    live = _fleet(50)
    _feed(live, [f"x{i}" for i in range(50)], T0, T0)
    inputs = live.inputs(T0 + 1000, tracked=[("s", "g:x7"), ("s", "nope")], silence=[])
    assert [f.signal for f in inputs.signals] == ["x7"]
    assert np.isfinite(inputs.signals[0].anomaly_score or 0.0)
    assert not inputs.signals[0].legacy


def test_a_tracked_bare_signal_id_gets_figures_that_let_it_clear() -> None:
    """An alert stored before subjects named the gateway (subject ``x7``): no figures (no
    condition holds), its gateway when the site has that signal on one gateway only."""
    live = _fleet(50)
    _feed(live, [f"x{i}" for i in range(50)], T0, T0)
    inputs = live.inputs(T0 + 1000, tracked=[("s", "x7"), ("s", "g:x8")], silence=[])
    assert [(f.signal, f.gateway, f.legacy) for f in inputs.signals] == [
        ("x8", "g", False),
        ("x7", "g", True),
    ]
    legacy = inputs.signals[1]
    assert (legacy.anomaly_score, legacy.last_seen_ms, legacy.stuck_since_ms) == (None,) * 3
    states = evaluate(load_rules(), inputs)
    old = [s for s in states if s.key.subject == "x7"]
    assert {s.key.rule for s in old} == {"signal-anomaly", "sensor-stuck", "no-data"}
    assert not any(s.raise_met or s.hold_met for s in old)


def test_a_refresh_spread_over_calls_gives_what_one_pass_gives() -> None:
    def build() -> LiveAnalytics:
        live = LiveAnalytics(plans=PlanBook(skus=(SkuPolicy("s", "K", None, lead_time_h=24.0),)))
        specs = [
            SignalSpec(id=f"l{i}", kind=SignalKind.STOCK_LEVEL, sku="K", period_s=60.0)
            for i in range(30)
        ]
        live.on_birth(
            "s",
            Birth(gateway="g", site="s", boot="b", agent_version="t", config_hash="h",
                  started_ms=T0, signals=specs),
        )  # fmt: skip
        for sid in range(30):
            trail = live.trail(sid)
            assert trail is not None
            for h in range(24 * 5):
                trail.add(T0 + h * 3_600_000, 1000.0 - (sid + 1) * h)
        return live

    now = T0 + 5 * 24 * 3_600_000
    whole, sliced = build(), build()
    assert whole.refresh(now)
    before = sliced.stock_figures
    calls = 1
    while not sliced.refresh(now, budget_ms=1e-6):  # one signal per call
        calls += 1
        assert sliced.stock_figures is before  # the old figures until the pass completes
    assert calls == 30
    assert sliced.stock_figures == whole.stock_figures
    assert len(whole.stock_figures) == 30


def _specs(*periods: tuple[int, float]) -> LiveAnalytics:
    live = LiveAnalytics(LiveSettings(rebuild_hours=6.0, rebuild_max_points=1_000_000))
    specs = [
        SignalSpec(id=f"x{i}-{k}", kind=SignalKind.SENSOR, period_s=p)
        for i, (n, p) in enumerate(periods)
        for k in range(n)
    ]
    live.on_birth(
        "s",
        Birth(gateway="g", site="s", boot="b", agent_version="t", config_hash="h",
              started_ms=T0, signals=specs),
    )  # fmt: skip
    return live


def test_each_signal_replays_its_warm_up_and_two_days_for_its_profile() -> None:
    """A 5-minute signal needs 150 samples (12.5 h) and then two days: 60.5 h, not 6 h."""
    [w] = engine_windows(_specs((1, 300.0)))
    assert w.window_ms == w.wanted_ms == 150 * 300_000 + PROFILE_MS
    assert w.points == 150 + 2 * 288
    [fast] = engine_windows(_specs((1, 1.0)))
    assert fast.window_ms == 150_000 + PROFILE_MS  # 172,950 points: within the budget


def test_over_budget_slow_signals_keep_their_need_and_fast_ones_share_the_rest() -> None:
    # 100 signals at 1 Hz want 17.3 M points, 200 at 60 s want 606,000 (3,030 each)
    windows = engine_windows(_specs((100, 1.0), (200, 60.0)))
    slow = [w for w in windows if w.period_ms == 60_000]
    fast = [w for w in windows if w.period_ms == 1_000]
    assert all(w.window_ms == w.wanted_ms == 150 * 60_000 + PROFILE_MS for w in slow)
    share = (1_000_000 - 200 * 3_030) / 100  # 3,940 points each
    assert all(w.window_ms == int(share * 1_000) for w in fast)
    assert sum(w.points for w in windows) <= 1_000_000
    assert fair_share([1.0, 2.0], 10) == float("inf")
    assert fair_share([1.0, 5.0, 5.0], 7) == 3.0


def test_the_replay_is_at_least_rebuild_hours() -> None:
    live = LiveAnalytics(LiveSettings(rebuild_hours=100.0))
    live.on_birth(
        "s",
        Birth(gateway="g", site="s", boot="b", agent_version="t", config_hash="h",
              started_ms=T0, signals=[SignalSpec(id="x", kind=SignalKind.SENSOR, period_s=60)]),
    )  # fmt: skip
    [w] = engine_windows(live)
    assert w.window_ms == 100 * 3_600_000
