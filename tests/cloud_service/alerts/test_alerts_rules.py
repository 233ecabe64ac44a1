"""Rule definitions from TOML and their pure evaluation over a ConditionInputs snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_service.alerts.errors import RuleError
from cloud_service.alerts.inputs import (
    ConditionInputs,
    ConsumptionFigures,
    GatewayFigures,
    ProductionFigures,
    SignalFigures,
    StockFigures,
)
from cloud_service.alerts.lifecycle import Lifecycle, LifecyclePolicy
from cloud_service.alerts.records import AlertKey, EventKind, RuleType
from cloud_service.alerts.rules import evaluate, load_rules, parse_duration, parse_rules
from shared.messages import Severity

NOW = 1_790_000_000_000  # 2026-09-21 14:13:20 UTC
MIN = 60_000

RULES = """
[[rules]]
id = "stockout"
type = "stockout_risk"
severity = "critical"
for = "10 minutes"
clear_for = "1h"
scope = { sites = ["plant-1"] }

[[rules]]
id = "reorder"
type = "reorder_now"

[[rules]]
id = "surge"
type = "consumption_above_plan"
match = "all"
when = [
  { metric = "ratio", op = ">=", value = 1.2 },
  { metric = "buffer_used", op = ">=", value = 0.5 },
]

[[rules]]
id = "line-behind"
type = "production_below_plan"
scope = { lines = ["3"] }

[[rules]]
id = "anomaly"
type = "signal_anomaly"

[[rules]]
id = "stuck"
type = "sensor_stuck"
for = 600

[[rules]]
id = "silent"
type = "no_data"
when = [{ metric = "silent_periods", op = ">=", value = 5 }]

[[rules]]
id = "gw-offline"
type = "gateway_offline"
severity = "critical"
"""


def stock(**kw: object) -> StockFigures:
    base: dict[str, object] = dict(
        site="plant-1", sku="A-113", location="W2", gateway="gw-1", stock=2_400.0,
        stockout_p10_h=19.0, stockout_p50_h=31.0, stockout_p90_h=52.0, lead_time_h=48.0,
        reorder_in_h=-17.0, reorder_qty=1_200.0,
    )  # fmt: skip
    return StockFigures(**{**base, **kw})  # type: ignore[arg-type]


def by_rule(inputs: ConditionInputs, text: str = RULES) -> dict[str, list]:  # type: ignore[type-arg]
    out: dict[str, list] = {}  # type: ignore[type-arg]
    for s in evaluate(parse_rules(text), inputs):
        out.setdefault(s.key.rule, []).append(s)
    return out


def test_rules_load_from_toml_with_durations_scope_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    rules = {r.id: r for r in load_rules(path)}
    assert len(rules) == 8
    r = rules["stockout"]
    assert (r.type, r.severity, r.on_delay_s, r.off_delay_s) == (
        RuleType.STOCKOUT_RISK, Severity.CRITICAL, 600.0, 3600.0,
    )  # fmt: skip
    assert r.scope.sites == {"plant-1"}
    assert [(c.metric, c.op, c.value) for c in r.conditions()] == [("margin_p10_h", "<", 0.0)]
    assert rules["stuck"].on_delay_s == 600.0
    assert rules["surge"].match == "all"
    assert len(rules["surge"].conditions()) == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("10 minutes", 600.0), ("1h30m", 5400.0), ("2 days", 172800.0),
     ("250ms", 0.25)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "5 parsecs", "-3s", True, "400d"])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[[rules]]\nid = "x"\ntype = "no_data"\nwhen = [{metric = "ratio", op = "<", value = 1}]',
         "rules.0"),
        ('[[rules]]\nid = "x"\ntype = "weather"', "rules.0.type"),
        ('[[rules]]\nid = "x/y"\ntype = "no_data"', "rules.0.id"),
        ('[[rules]]\nid = "x"\ntype = "no_data"\nfor = "soon"', "rules.0.for"),
        ('[[rules]]\nid = "x"\ntype = "no_data"\nscope = { skus = ["a b"] }', "rules.0.scope.skus"),
        ('[[rules]]\nid = "x"\ntype = "no_data"\n[[rules]]\nid = "x"\ntype = "no_data"',
         "rules.1.id"),
        ("[[rules]\n", "(syntax)"),
        ("a = " + "[" * 100_000 + "]" * 100_000, "(syntax)"),  # deeper than the parser recurses
    ],
)  # fmt: skip
def test_rule_errors_name_the_field(text: str, where: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(text, "rules.toml")
    assert info.value.source == "rules.toml"
    assert info.value.problems[0][0] == where


def test_stockout_explains_the_figures_and_recommends_an_order() -> None:
    (s,) = by_rule(ConditionInputs(NOW, stock=[stock()]))["stockout"]
    assert s.key == AlertKey("stockout", "plant-1", "W2:A-113")
    assert (s.raise_met, s.severity, s.gateway) == (True, Severity.CRITICAL, "gw-1")
    assert s.message == (
        "SKU A-113 at W2 runs out in 31 h (P50; P10 19 h); lead time 48 h: order 1,200 units today"
    )
    assert s.action == "Order 1,200 units today"
    assert s.figures["margin_p10_h"] == -29.0
    assert s.figures["stock"] == 2400.0
    assert s.on_delay_ms == 10 * MIN
    assert s.off_delay_ms == 60 * MIN


def test_a_stock_already_out_is_said_to_be_out_not_to_run_out_in_0_h() -> None:
    out = stock(stock=0.0, stockout_p10_h=0.0, stockout_p50_h=0.0, stockout_p90_h=0.0)
    (s,) = by_rule(ConditionInputs(NOW, stock=[out]))["stockout"]
    assert s.raise_met
    assert s.title == "SKU A-113 at W2 is out of stock"
    assert s.message.startswith("SKU A-113 at W2 is out of stock; lead time 48 h: ")


def test_deadband_keeps_an_active_stockout_alert_while_the_margin_is_small() -> None:
    (s,) = by_rule(ConditionInputs(NOW, stock=[stock(stockout_p10_h=49.0)]))["stockout"]
    assert (s.raise_met, s.hold_met) == (False, True)  # margin 1 h: within the 2 h deadband
    (s,) = by_rule(ConditionInputs(NOW, stock=[stock(stockout_p10_h=51.0)]))["stockout"]
    assert (s.raise_met, s.hold_met) == (False, False)


def test_an_unknown_figure_never_satisfies_a_condition() -> None:
    (s,) = by_rule(ConditionInputs(NOW, stock=[stock(stockout_p10_h=None)]))["stockout"]
    assert (s.raise_met, s.hold_met) == (False, False)
    assert "unknown" in s.reason


def test_scope_filters_subjects() -> None:
    inputs = ConditionInputs(NOW, stock=[stock(site="plant-2")])
    assert "stockout" not in by_rule(inputs)  # only plant-1
    assert len(by_rule(inputs)["reorder"]) == 1  # no scope: every site


def test_and_needs_every_condition_or_needs_one() -> None:
    surge = ConsumptionFigures(site="plant-1", sku="A-113", location="W2", actual=1350.0,
                               planned=1000.0, buffer_used=0.3)  # fmt: skip
    (s,) = by_rule(ConditionInputs(NOW, consumption=[surge]))["surge"]
    assert not s.raise_met
    any_text = RULES.replace('match = "all"', 'match = "any"')
    (s,) = by_rule(ConditionInputs(NOW, consumption=[surge]), any_text)["surge"]
    assert s.raise_met
    assert s.title == "Consumption of SKU A-113 at W2 at 135% of plan"


def test_production_below_plan_words() -> None:
    line = ProductionFigures(site="plant-1", line="3", produced=710.0, planned_so_far=1000.0,
                             attainment=0.71, projected_attainment=0.83,
                             required_rate_per_h=160.0)  # fmt: skip
    other = ProductionFigures(site="plant-1", line="4", produced=0.0, planned_so_far=1.0,
                              attainment=0.0, projected_attainment=0.0)  # fmt: skip
    (s,) = by_rule(ConditionInputs(NOW, production=[line, other]))["line-behind"]
    assert s.title == "Line 3 at 71% of plan, projected 83% at shift end"
    assert s.action == "Raise line 3 to 160 units/h or re-plan the shift"
    assert s.raise_met


def test_signal_rules_stuck_silent_and_anomalous() -> None:
    since = NOW - 45 * MIN  # NOW is 14:13:20 UTC
    lc7 = SignalFigures(site="plant-1", gateway="gw-1", signal="lc7", label="Load cell LC-7",
                        stuck_since_ms=since, last_seen_ms=NOW - 6 * MIN, period_s=60.0,
                        anomaly_score=0.8, anomaly_reason="flatline")  # fmt: skip
    states = by_rule(ConditionInputs(NOW, signals=[lc7]))
    (stuck,) = states["stuck"]
    assert stuck.raise_met
    assert stuck.title == "Load cell LC-7 stuck since 13:28 UTC"
    (silent,) = states["silent"]
    assert silent.raise_met
    assert silent.figures["silent_periods"] == 6.0
    (anomaly,) = states["anomaly"]
    assert anomaly.raise_met
    assert anomaly.title == "Unusual flatline on Load cell LC-7"
    assert all(s.gateway == "gw-1" for s in (stuck, silent, anomaly))


def test_gateway_offline_or_silent() -> None:
    online_but_silent = GatewayFigures(site="plant-1", gateway="gw-1", online=True,
                                       last_seen_ms=NOW - 6 * MIN)  # fmt: skip
    reported_offline = GatewayFigures(site="plant-1", gateway="gw-2", online=False,
                                      last_seen_ms=NOW - MIN, state_since_ms=NOW - MIN)  # fmt: skip
    fine = GatewayFigures(site="plant-1", gateway="gw-3", online=True, last_seen_ms=NOW)
    states = by_rule(ConditionInputs(NOW, gateways=[online_but_silent, reported_offline, fine]))
    assert [s.raise_met for s in states["gw-offline"]] == [True, True, False]
    assert [s.gateway for s in states["gw-offline"]] == ["gw-1", "gw-2", "gw-3"]


def test_rules_drive_the_lifecycle_with_their_on_delay() -> None:
    rules = parse_rules(RULES)
    lc = Lifecycle(LifecyclePolicy())
    lc7 = SignalFigures(site="plant-1", gateway="gw-1", signal="lc7", stuck_since_ms=NOW - 20 * MIN)
    assert lc.observe(evaluate(rules, ConditionInputs(NOW, signals=[lc7])), NOW) == []
    later = ConditionInputs(NOW + 10 * MIN, signals=[lc7])
    events = lc.observe(evaluate(rules, later), later.now_ms)
    assert [(e.kind, e.alert.key.rule) for e in events] == [(EventKind.RAISED, "stuck")]
    assert "(for 10 min)" in events[0].reason
