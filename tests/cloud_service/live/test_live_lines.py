"""A line counted per SKU: the rules see the line's total and its mix drift, not each SKU."""

from __future__ import annotations

import pytest

from cloud_service.alerts.inputs import ConditionInputs
from cloud_service.alerts.rules import evaluate, load_rules, parse_rules
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.plans.model import DemandTarget, PlanBook, ProductionTarget
from shared.messages import Birth, Reading, SignalKind, SignalSpec, TelemetryBatch

T0 = 1_767_772_800_000  # 2026-01-07 08:00 UTC
HOUR, MINUTE = 3_600_000, 60_000
SITE, GW = "s", "g"


def _live(
    counters: dict[str, tuple[str, str | None]], targets: dict[str | None, float]
) -> LiveAnalytics:
    """``counters``: signal -> (line, sku); ``targets``: sku -> quantity for [T0, T0 + 8 h)."""
    plan = PlanBook(
        production=tuple(
            ProductionTarget(SITE, "L", T0, T0 + 8 * HOUR, qty, sku=sku)
            for sku, qty in targets.items()
        )
    )
    live = LiveAnalytics(plans=plan)
    specs = [
        SignalSpec(id=sid, kind=SignalKind.PRODUCTION_COUNT, line=line, sku=sku, period_s=60.0)
        for sid, (line, sku) in counters.items()
    ]
    live.on_birth(
        SITE,
        Birth(gateway=GW, site=SITE, boot="b", agent_version="t", config_hash="h",
              started_ms=T0, signals=specs),
    )  # fmt: skip
    return live


def _run(live: LiveAnalytics, per_minute: dict[str, float], minutes: int) -> int:
    """Counters from 10 min before the period, each adding ``per_minute`` from T0."""
    for seq, m in enumerate(range(-10, minutes + 1), start=1):
        t = T0 + m * MINUTE
        readings = [Reading(s, t, max(m, 0) * rate) for s, rate in per_minute.items()]
        live.on_batch(
            SITE, GW, TelemetryBatch(gateway=GW, boot="b", seq=seq, readings=readings), now_ms=t
        )
    return T0 + minutes * MINUTE


def test_a_line_counted_per_sku_reaches_the_rules_once_with_its_mix_drift() -> None:
    # the plan: 480 of X and 480 of Y in 8 h; the line makes only X, at the line's full rate
    live = _live({"cx": ("L", "X"), "cy": ("L", "Y")}, {"X": 480.0, "Y": 480.0})
    now = _run(live, {"cx": 2.0, "cy": 0.0}, 240)
    assert live.refresh(now)
    [line] = live.production_figures
    assert (line.line, line.sku) == ("L", None)
    assert line.produced == pytest.approx(480.0)
    assert line.planned_so_far == pytest.approx(480.0)  # half of 960
    assert line.attainment == pytest.approx(1.0)
    assert line.projected_attainment == pytest.approx(1.0, abs=0.01)
    assert line.mix_drift == pytest.approx(0.5)  # all X where the plan wanted half Y
    # both counters are still written back, each against its own target
    by_sku = {info.spec.sku: a for info, a in live.adherence_results if info.spec}
    assert by_sku["X"].attainment == pytest.approx(2.0)
    assert by_sku["Y"].attainment == pytest.approx(0.0)
    [total] = live.line_totals
    assert total.tags == {"site": SITE, "line": "L", "gateway": GW}
    assert total.mix_drift == pytest.approx(0.5)

    # the default production rule sees a line on plan; a mix rule sees the drift, once
    inputs = ConditionInputs(now_ms=now, production=live.production_figures)
    assert not any(s.raise_met for s in evaluate(load_rules(), inputs))
    mix = parse_rules(
        '[[rules]]\nid = "mix"\ntype = "production_below_plan"\n'
        'when = [{ metric = "mix_drift", op = ">", value = 0.3 }]\n'
    )
    [state] = evaluate(mix, inputs)
    assert state.raise_met
    assert state.key.subject == "L"
    assert "50% of the output off the planned mix" in state.message


def test_a_line_on_its_planned_mix_has_no_drift_and_a_stopped_one_is_behind_plan() -> None:
    live = _live({"cx": ("L", "X"), "cy": ("L", "Y")}, {"X": 480.0, "Y": 240.0})
    now = _run(live, {"cx": 1.0, "cy": 0.5}, 240)
    live.refresh(now)
    [line] = live.production_figures
    assert line.mix_drift == pytest.approx(0.0, abs=1e-9)
    assert line.attainment == pytest.approx(1.0)

    stopped = _live({"cx": ("L", "X"), "cy": ("L", "Y")}, {"X": 480.0, "Y": 240.0})
    now = _run(stopped, {"cx": 0.0, "cy": 0.0}, 240)
    stopped.refresh(now)
    [line] = stopped.production_figures
    assert line.produced == 0.0
    assert line.projected_attainment == pytest.approx(0.0)
    assert line.required_rate_per_h == pytest.approx(720 / 4)
    states = evaluate(load_rules(), ConditionInputs(now_ms=now, production=[line]))
    assert [(s.key.rule, s.key.subject) for s in states if s.raise_met] == [
        ("production-behind-plan", "L")
    ]


def test_a_line_with_one_counter_or_one_sku_is_left_as_it_is() -> None:
    live = _live({"c": ("L", None)}, {None: 480.0})
    now = _run(live, {"c": 1.0}, 120)
    live.refresh(now)
    [fig] = live.production_figures
    assert fig.sku is None
    assert fig.mix_drift is None
    assert live.line_totals == []

    one = _live({"cx": ("L", "X")}, {"X": 480.0, "Y": 480.0})
    now = _run(one, {"cx": 1.0}, 120)
    one.refresh(now)
    [fig] = one.production_figures
    assert fig.sku == "X"
    assert one.line_totals == []


def test_a_line_with_its_own_counter_and_per_sku_counts_speaks_through_its_own() -> None:
    """A PLC counter of the whole line and an MES's count per SKU: one figure for the line,
    the PLC's (it is held to the sum of the targets), with the MES's mix drift."""
    live = _live({"plc": ("L", None), "cx": ("L", "X"), "cy": ("L", "Y")}, {"X": 480.0, "Y": 240.0})
    now = _run(live, {"plc": 1.0, "cx": 1.0, "cy": 0.0}, 240)  # the MES lags: PLC 240 made
    live.refresh(now)
    [line] = live.production_figures
    assert (line.line, line.sku) == ("L", None)
    assert line.produced == pytest.approx(240.0)  # the PLC's count
    assert line.planned_so_far == pytest.approx(360.0)  # half of 480 + 240
    assert line.mix_drift == pytest.approx(1 / 3)  # all X, where a third was to be Y
    assert len(live.line_totals) == 1  # still written back as the MES's sum


def test_per_sku_counts_against_a_plan_for_the_whole_line_only() -> None:
    """The plan says 480 of anything in 8 h; the MES counts X and Y: the line's total is held
    to the 480 once (not once per SKU), and there is no planned mix to drift from."""
    live = _live({"cx": ("L", "X"), "cy": ("L", "Y")}, {None: 480.0})
    now = _run(live, {"cx": 0.5, "cy": 0.5}, 240)
    live.refresh(now)
    [line] = live.production_figures
    assert (line.line, line.sku) == ("L", None)
    assert line.produced == pytest.approx(240.0)
    assert line.planned_so_far == pytest.approx(240.0)
    assert line.attainment == pytest.approx(1.0)
    assert line.mix_drift is None


def test_a_line_counter_beside_one_sku_count_is_still_one_figure() -> None:
    """Y has no count today: the line's PLC and X's count must not become two alerts."""
    live = _live({"plc": ("L", None), "cx": ("L", "X")}, {"X": 480.0, "Y": 240.0})
    now = _run(live, {"plc": 1.0, "cx": 1.0}, 240)
    live.refresh(now)
    [line] = live.production_figures
    assert (line.line, line.sku) == ("L", None)
    assert line.planned_so_far == pytest.approx(360.0)  # the PLC's: X and Y
    assert line.mix_drift is None  # one SKU counted: no mix to speak of


def test_a_line_making_only_an_unplanned_sku_drifts_all_the_way() -> None:
    live = _live({"cx": ("L", "X"), "cz": ("L", "Z")}, {"X": 480.0})
    now = _run(live, {"cx": 0.0, "cz": 1.0}, 240)
    live.refresh(now)
    [line] = live.production_figures
    assert line.produced == pytest.approx(240.0)  # Z's output counts for the line
    assert line.planned_so_far == pytest.approx(240.0)
    assert line.mix_drift == pytest.approx(1.0)
    z = [a for info, a in live.adherence_results if info.spec and info.spec.sku == "Z"]
    assert z[0].planned_so_far == 0.0  # held to nothing, not to X's target


def test_a_sku_count_beside_its_lines_plc_counter_nets_the_output_once() -> None:
    """Line L makes only X (so its PLC counter would feed X's stock), and the MES counts X
    too: the stock's consumption is recovered with one of them, not neither (two feeders)
    nor both. 10 an hour consumed, 30 an hour made into the stock for 30 hours."""
    start = T0 - 30 * HOUR
    plan = PlanBook(
        production=(ProductionTarget(SITE, "L", start, T0 + HOUR, 31 * 30.0, sku="X"),),
        demand=(DemandTarget(SITE, "X", start, T0 + HOUR, 31 * 10.0, location="W"),),
    )
    live = LiveAnalytics(plans=plan)
    specs = [
        SignalSpec(id="plc", kind=SignalKind.PRODUCTION_COUNT, line="L", period_s=60.0),
        SignalSpec(id="cx", kind=SignalKind.PRODUCTION_COUNT, line="L", sku="X", period_s=60.0),
        SignalSpec(id="lvl", kind=SignalKind.STOCK_LEVEL, sku="X", location="W", period_s=60.0),
    ]
    live.on_birth(
        SITE,
        Birth(gateway=GW, site=SITE, boot="b", agent_version="t", config_hash="h",
              started_ms=start, signals=specs),
    )  # fmt: skip
    for seq, m in enumerate(range(0, 30 * 60 + 1, 10), start=1):
        t = start + m * MINUTE
        made = 0.5 * m
        level = 1000 + (30 - 10) * m / 60  # 30 in, 10 out an hour
        readings = [Reading("plc", t, made), Reading("cx", t, made), Reading("lvl", t, level)]
        live.on_batch(
            SITE, GW, TelemetryBatch(gateway=GW, boot="b", seq=seq, readings=readings), now_ms=t
        )
    assert live.refresh(T0)
    [used] = live.consumption_figures
    assert used.actual == pytest.approx(240.0, rel=0.02)  # 10 an hour over the 24 h window
