"""Scenario files: the default one loads; a malformed one is refused naming the field and line."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from sim_scenarios import SMALL, small_scenario

from firmware_sim.core.calendar import DailyWindow, WeeklyCalendar
from firmware_sim.errors import ScenarioError
from firmware_sim.scenario import DEFAULT_SCENARIO, default_scenario, load_scenario, parse_scenario
from firmware_sim.scenario.model import PATTERN_PRESETS, DemandPattern, FaultKind, SensorType


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def refused(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="t.toml")
    return info.value


def test_default_scenario_covers_the_issue() -> None:
    s = default_scenario()
    patterns = {k.demand.pattern for k in s.skus() if k.demand is not None}
    assert patterns == set(DemandPattern)
    assert {f.kind for f in s.faults} == set(FaultKind)
    assert {sig.type for sig in s.signals} == set(SensorType)
    assert {line.counter_bits for line in s.lines} == {16, 32}
    orders = {reg.word_order for d in s.modbus_devices for reg in d.registers if reg.width == 2}
    assert len(orders) == 2  # both word orders are served
    assert s.mqtt_devices
    assert s.random_faults


def test_weekly_weights_are_normalised_and_presets_fill_in() -> None:
    s = default_scenario()
    a113 = next(k for k in s.skus() if k.sku == "A-113")
    assert a113.demand is not None
    assert sum(a113.demand.weekly) == pytest.approx(7.0)
    c310 = next(k for k in s.skus() if k.sku == "C-310")
    assert c310.demand is not None
    assert (c310.demand.orders_per_day, c310.demand.size_cv2) == PATTERN_PRESETS[
        DemandPattern.INTERMITTENT
    ]


def test_syntax_error_names_the_line() -> None:
    text = SMALL.replace('id = "W1"', 'id = "W1', 1)
    err = refused(text)
    assert "not valid TOML" in str(err)
    assert err.source == "t.toml"
    assert err.line == line_of(text, 'id = "W1')


def test_bad_value_names_field_and_line() -> None:
    text = SMALL.replace("rate_per_h = 60", "rate_per_h = -60")
    err = refused(text)
    assert err.field == "lines[0].products[0].rate_per_h"
    assert err.line == line_of(text, "rate_per_h = -60")
    assert str(err) == (f"t.toml:{err.line}: lines[0].products[0].rate_per_h: must be > 0, got -60")


def test_wrong_type_and_unknown_field() -> None:
    text = SMALL.replace("initial_stock = 50", 'initial_stock = "fifty"')
    err = refused(text)
    assert err.field == "warehouses[0].skus[1].initial_stock"
    assert "must be an integer, got a string" in err.reason
    assert err.line == line_of(text, '"fifty"')
    text = SMALL.replace("lot_size = 25", "lot_sise = 25")
    err = refused(text)
    assert err.field == "lines[0].lot_sise"
    assert "unknown field" in err.reason
    assert err.line == line_of(text, "lot_sise")


def test_missing_field_points_at_its_table() -> None:
    text = SMALL.replace('  sku = "B1"\n', "")
    err = refused(text)
    assert err.field == "warehouses[0].skus[1].sku"
    assert err.reason == "is required"
    # The table header of the second [[warehouses.skus]] entry.
    headers = [i for i, line in enumerate(text.splitlines(), 1) if "[[warehouses.skus]]" in line]
    assert err.line == headers[1]


def test_inline_table_errors_fall_back_to_their_key() -> None:
    text = SMALL.replace('start = "06:00", end = "22:00"', 'start = "6am", end = "22:00"')
    err = refused(text)
    assert err.field == "lines[0].shifts[0].start"
    assert err.line == line_of(text, "shifts = ")


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        ('warehouse = "W1"\ncounter', 'warehouse = "W9"\ncounter', "lines[0].warehouse", "W9"),
        ('signal = "l1.count"', 'signal = "nope"', "modbus[0].registers[1].signal", "nope"),
        ("address = 2", "address = 1", "modbus[0].registers[1].address", "already used"),
        ('"b1.weight", "p1.level"]', '"b1.weight", "zz"]', "mqtt_devices[0].signals", "zz"),
        ("counter_bits = 16", "counter_bits = 24", "lines[0].counter_bits", "16"),
        (
            'days = "mon-fri" }]\nplanned',
            'days = "mon-fry" }]\nplanned',
            "lines[0].shifts[0].days",
            "",
        ),
        ('id = "l1.temp"', 'id = "p1.level"', "signals[3]", "duplicate signal"),
        ('pattern = "lumpy"', 'pattern = "bursty"', "warehouses[0].skus[1].demand.pattern", ""),
    ],
)
def test_references_and_ranges(old: str, new: str, field: str, reason: str) -> None:
    assert old in SMALL
    err = refused(SMALL.replace(old, new, 1))
    assert err.field == field
    assert reason in err.reason
    assert err.line is not None


def test_fault_targets_are_checked() -> None:
    fault = '\n[[faults]]\nkind = "flatline"\ntarget = "L1"\nat_h = 1\nduration_h = 1\n'
    err = refused(SMALL + fault)
    assert err.field == "faults[0].target"
    assert "needs a signal" in err.reason
    assert err.line == len(SMALL.splitlines()) + 4
    ok = small_scenario(fault.replace('"L1"', '"p1.level"'))
    assert ok.faults[0].duration_ms == 3_600_000
    err = refused(SMALL + fault.replace("duration_h = 1", "duration_h = 0"))
    assert err.field == "faults[0].duration_h"


def test_load_from_file_and_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "plant.toml"
    path.write_text(SMALL)
    assert load_scenario(path).site == "t-plant"
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    assert load_scenario(DEFAULT_SCENARIO).name == "Demo plant"


def test_scenario_error_pickles() -> None:
    err = ScenarioError("must be > 0", field="a[1].b", line=7, source="x.toml")
    again = pickle.loads(pickle.dumps(err))
    assert (again.field, again.line, again.source, str(again)) == ("a[1].b", 7, "x.toml", str(err))


def test_windows_crossing_midnight_and_back_to_back_shifts_merge() -> None:
    night = WeeklyCalendar([DailyWindow(22 * 60, 6 * 60, frozenset({0}))])  # Mon 22:00-Tue 06:00
    monday = 1_767_571_200_000
    hour = 3_600_000
    assert not night.active(monday + 21 * hour)
    assert night.active(monday + 23 * hour)
    assert night.active(monday + 29 * hour)  # Tuesday 05:00
    assert night.next_change(monday + 23 * hour) == monday + 30 * hour
    shifts = WeeklyCalendar(
        [
            DailyWindow(6 * 60, 14 * 60, frozenset(range(5))),
            DailyWindow(14 * 60, 22 * 60, frozenset(range(5))),
        ]
    )
    assert shifts.next_change(monday + 7 * hour) == monday + 22 * hour  # no boundary at 14:00
    assert shifts.minutes_on(monday) == 16 * 60
    assert shifts.minutes_on(monday + 5 * 24 * hour) == 0  # Saturday
