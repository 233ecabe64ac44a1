"""Scenario TOML -> :class:`~firmware_sim.scenario.model.Scenario`, field by field.

Only shapes, types and ranges are checked here; references between sections (a line's
warehouse, a register's signal) are checked in :mod:`firmware_sim.scenario.checks` once
everything is read. The schema is documented in ``docs/simulator.md``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Final

from firmware_sim.core.calendar import DAY_MS, HOUR_MS, WEEKDAYS, DailyWindow
from firmware_sim.errors import ScenarioError
from firmware_sim.scenario import checks
from firmware_sim.scenario.model import (
    PATTERN_PRESETS,
    DemandPattern,
    DemandSpec,
    FaultKind,
    FaultParams,
    FaultSpec,
    LineSpec,
    ModbusDeviceSpec,
    MqttDeviceSpec,
    PlanSpec,
    ProductSpec,
    Promotion,
    RandomFaultSpec,
    RegisterSpec,
    RegisterType,
    ReplenishmentSpec,
    ReplenishPolicy,
    Scenario,
    SensorType,
    SignalSpec,
    SkuSpec,
    WarehouseSpec,
    WordOrder,
)
from firmware_sim.scenario.reader import Context, Table

DEFAULT_SCENARIO: Final = Path(__file__).with_name("default.toml")
_MAX_HOURS: Final = 24.0 * 366 * 10
_AT_LINE: Final = re.compile(r"at line (\d+)")


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; :class:`ScenarioError` names the field and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read the file: {exc}", source=str(p)) from None
    return parse_scenario(text, source=str(p))


def default_scenario() -> Scenario:
    """The scenario that ships with the package (and drives the demo)."""
    return load_scenario(DEFAULT_SCENARIO)


def parse_scenario(text: str, *, source: str = "scenario") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _AT_LINE.search(str(exc))  # "... (at line 12, column 5)"
        line = int(m.group(1)) if m else None
        raise ScenarioError(f"not valid TOML: {exc}", line=line, source=source) from None
    ctx = Context(source, text)
    root = Table(data, "", ctx)
    scenario = _scenario(root, source)
    root.done()
    checks.check(scenario, ctx)
    return scenario


def _scenario(t: Table, source: str) -> Scenario:
    plan = t.table("plan") or Table({}, "plan", t.ctx)
    plan_spec = PlanSpec(
        production_tolerance=plan.number("production_tolerance", 0.1, ge=0),
        demand_tolerance=plan.number("demand_tolerance", 0.25, ge=0),
        demand_bucket_days=plan.integer("demand_bucket_days", 7, ge=1, le=366),
        demand_plan_bias=plan.number("demand_plan_bias", 1.0, gt=0),
    )
    plan.done()
    site = t.ident("site")
    return Scenario(
        name=t.string("name", site),
        site=site,
        gateway=t.ident("gateway", "sim-gw"),
        plan=plan_spec,
        warehouses=t.each("warehouses", _warehouse),
        lines=t.each("lines", _line),
        signals=t.each("signals", _signal),
        modbus_devices=t.each("modbus", _modbus_device),
        mqtt_devices=t.each("mqtt_devices", _mqtt_device),
        faults=t.each("faults", _fault),
        random_faults=t.each("random_faults", _random_fault),
        source=source,
    )


def _warehouse(t: Table) -> WarehouseSpec:
    wid = t.ident("id")
    return WarehouseSpec(id=wid, skus=t.each("skus", lambda s: _sku(s, wid)))


def _sku(t: Table, warehouse: str) -> SkuSpec:
    demand_t = t.table("demand")
    demand = _demand(demand_t) if demand_t else None
    if demand_t:
        demand_t.done()
    mean = demand.mean_per_day if demand else 0.0
    rep_t = t.table("replenishment") or Table({}, t.field("replenishment"), t.ctx)
    policy = ReplenishPolicy(
        rep_t.string("policy", "sQ", choices={p.value for p in ReplenishPolicy})
    )
    lead_h = rep_t.number("lead_time_h", 48.0, ge=0, le=_MAX_HOURS)
    safety = t.integer("safety_stock", 0, ge=0)
    default_s = safety + round(mean * lead_h / 24)
    default_q = max(1, round(mean * 7))
    replenishment = ReplenishmentSpec(
        policy=policy,
        reorder_point=rep_t.integer("reorder_point", default_s, ge=0),
        quantity=rep_t.integer("quantity", default_q, ge=1),
        lead_time_h=lead_h,
        lead_time_cv=rep_t.number("lead_time_cv", 0.0, ge=0, le=2),
    )
    rep_t.done()
    if policy is ReplenishPolicy.SS and replenishment.quantity <= replenishment.reorder_point:
        raise rep_t.error("quantity", "for policy sS (order up to S) must exceed reorder_point")
    return SkuSpec(
        warehouse=warehouse,
        sku=t.ident("sku"),
        initial_stock=t.integer("initial_stock", ge=0),
        safety_stock=safety,
        unit_weight_kg=t.number("unit_weight_kg", 1.0, gt=0),
        demand=demand,
        replenishment=replenishment,
    )


def _demand(t: Table) -> DemandSpec:
    pattern = DemandPattern(t.string("pattern", "smooth", choices={p.value for p in DemandPattern}))
    orders, cv2 = PATTERN_PRESETS[pattern]
    weekly = t.numbers("weekly", (1.0,) * 7, length=7)
    if min(weekly) < 0 or sum(weekly) <= 0:
        raise t.error("weekly", "must be >= 0 with a positive sum")
    norm = sum(weekly) / 7
    hours = t.numbers("open_hours", (0.0, 24.0), length=2)
    if not 0 <= hours[0] < hours[1] <= 24:
        raise t.error("open_hours", "must be [from, to] with 0 <= from < to <= 24")
    return DemandSpec(
        pattern=pattern,
        mean_per_day=t.number("mean_per_day", ge=0),
        orders_per_day=t.number("orders_per_day", orders, gt=0, le=100_000),
        size_cv2=t.number("size_cv2", cv2, ge=0, le=100),
        weekly=tuple(w / norm for w in weekly),
        trend_per_week=t.number("trend_per_week", 0.0, ge=-1, le=10),
        promotions=t.each("promotions", _promotion),
        open_hours=(hours[0], hours[1]),
    )


def _promotion(t: Table) -> Promotion:
    return Promotion(
        start_day=t.integer("start_day", ge=0),
        days=t.integer("days", 1, ge=1),
        uplift=t.number("uplift", ge=0),
    )


def _days(t: Table, key: str) -> frozenset[int]:
    raw = t.string(key, "mon-sun").lower().replace(" ", "")
    days: set[int] = set()
    for part in raw.split(","):
        lo, _, hi = part.partition("-")
        if lo not in WEEKDAYS or (hi and hi not in WEEKDAYS):
            raise t.error(key, f"must be weekdays like 'mon-fri' or 'mon,wed,sat'; got {raw!r}")
        a, b = WEEKDAYS.index(lo), WEEKDAYS.index(hi or lo)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return frozenset(days)


def _window(t: Table) -> DailyWindow:
    start = t.hhmm("start")
    if t.has("end"):
        end = t.hhmm("end")
        if end == start:
            raise t.error("end", "must differ from start")
    elif t.has("minutes"):
        end = start + round(t.number("minutes", gt=0, le=1440))
    else:
        raise t.error("start", "needs an end (HH:MM) or a length in minutes")
    return DailyWindow(start, end % 1440, _days(t, "days"))


def _line(t: Table) -> LineSpec:
    return LineSpec(
        id=t.ident("id"),
        warehouse=t.ident("warehouse"),
        products=t.each("products", _product),
        shifts=t.each("shifts", _window),
        planned_stops=t.each("planned_stops", _window),
        counter_bits=_counter_bits(t),
        lot_size=t.integer("lot_size", 50, ge=1),
        mtbf_h=t.number("mtbf_h", 0.0, ge=0),
        mttr_min=t.number("mttr_min", 30.0, gt=0),
        scrap_rate=t.number("scrap_rate", 0.0, ge=0, le=0.9),
        ambient_c=t.number("ambient_c", 22.0),
        running_c=t.number("running_c", 60.0),
        thermal_tau_min=t.number("thermal_tau_min", 20.0, gt=0),
        vibration_idle=t.number("vibration_idle", 0.3, ge=0),
        vibration_running=t.number("vibration_running", 2.8, ge=0),
    )


def _counter_bits(t: Table) -> int:
    bits: int = t.integer("counter_bits", 32)
    if bits not in {16, 32}:
        raise t.error("counter_bits", f"must be 16 or 32 (a PLC counter's width), got {bits}")
    return bits


def _product(t: Table) -> ProductSpec:
    return ProductSpec(
        sku=t.ident("sku"),
        rate_per_h=t.number("rate_per_h", gt=0, le=3_600_000),
        daily_target=t.integer("daily_target", 0, ge=0),
    )


def _signal(t: Table) -> SignalSpec:
    kind = SensorType(t.string("type", choices={s.value for s in SensorType}))
    counter = kind is SensorType.COUNTER
    return SignalSpec(
        id=t.ident("id"),
        type=kind,
        warehouse=t.ident("warehouse", None),
        sku=t.ident("sku", None),
        line=t.ident("line", None),
        counter=t.string("counter", "good", choices={"good", "scrap"}),
        period_s=t.number("period_s", 1.0, ge=0.001, le=86_400),
        noise=t.number("noise", 0.0, ge=0),
        resolution=t.number("resolution", 1.0 if counter else 0.0, ge=0),
        scale=t.number("scale", 1.0),
        offset=t.number("offset", 0.0),
        minimum=t.number("min", 0.0 if kind is not SensorType.TEMPERATURE else None),
        maximum=t.number("max", None),
        unit=t.string("unit", ""),
        description=t.string("description", ""),
    )


def _register(t: Table) -> RegisterSpec:
    return RegisterSpec(
        signal=t.ident("signal"),
        address=t.integer("address", ge=0, le=65535),
        type=RegisterType(t.string("type", "float32", choices={r.value for r in RegisterType})),
        word_order=WordOrder(t.string("word_order", "big", choices={w.value for w in WordOrder})),
        scale=t.number("scale", 1.0),
    )


def _modbus_device(t: Table) -> ModbusDeviceSpec:
    return ModbusDeviceSpec(
        unit=t.integer("unit", ge=1, le=247), registers=t.each("registers", _register)
    )


def _mqtt_device(t: Table) -> MqttDeviceSpec:
    return MqttDeviceSpec(
        gateway=t.ident("gateway"),
        signals=t.strings("signals"),
        publish_s=t.number("publish_s", 1.0, ge=0.01, le=3600),
    )


def _hours_ms(t: Table, key: str) -> int:
    hours: float = t.number(key, ge=0, le=_MAX_HOURS)
    return round(hours * HOUR_MS)


def _params(t: Table, kind: FaultKind) -> FaultParams:
    return FaultParams(
        rate_per_h=t.number("rate_per_h", 1.0 if kind is FaultKind.DRIFT else 0.0),
        probability=t.number("probability", 0.05 if kind is FaultKind.SPIKES else 0.0, ge=0, le=1),
        magnitude=t.number("magnitude", 0.0),
        offset_ms=round(t.number("offset_s", 0.0) * 1000),
        multiplier=t.number("multiplier", 3.0 if kind is FaultKind.DEMAND_SURGE else 1.0, ge=0),
    )


def _fault_kind(t: Table) -> FaultKind:
    return FaultKind(t.string("kind", choices={k.value for k in FaultKind}))


def _fault(t: Table) -> FaultSpec:
    kind = _fault_kind(t)
    instant = kind is FaultKind.COUNTER_RESET
    duration = 0 if instant else _hours_ms(t, "duration_h")
    if not instant and duration <= 0:
        raise t.error("duration_h", "must be > 0")
    return FaultSpec(
        kind=kind,
        target=t.ident("target"),
        at_ms=_hours_ms(t, "at_h"),
        duration_ms=duration,
        params=_params(t, kind),
        warehouse=t.ident("warehouse", None),
    )


def _random_fault(t: Table) -> RandomFaultSpec:
    kind = _fault_kind(t)
    if kind is FaultKind.COUNTER_RESET:
        lo = hi = 0
    else:
        span = t.numbers("duration_h", length=2)
        if not 0 < span[0] <= span[1] <= _MAX_HOURS:
            raise t.error(
                "duration_h", "must be [shortest, longest] hours, 0 < shortest <= longest"
            )
        lo, hi = round(span[0] * HOUR_MS), round(span[1] * HOUR_MS)
    targets = t.strings("targets")
    if not targets:
        raise t.error("targets", "must name at least one target")
    per_week = t.number("per_week", gt=0, le=7 * DAY_MS / HOUR_MS)
    return RandomFaultSpec(kind, targets, per_week, (lo, hi), _params(t, kind))
