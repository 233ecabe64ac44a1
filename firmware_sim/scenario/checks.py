"""Cross-references of a scenario: every name it uses must exist and fit where it is used.

Run after parsing, with the key paths the parser used, so an error still points at the field
and line that is wrong (``modbus[0].registers[3].signal: no signal 'wh9.level'``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from firmware_sim.scenario.model import (
    GATEWAY_FAULTS,
    LINE_FAULTS,
    SIGNAL_FAULTS,
    FaultKind,
    ReplenishPolicy,
    Scenario,
    SensorType,
    SignalSpec,
)
from firmware_sim.scenario.reader import Context

_STOCK_SENSORS = frozenset({SensorType.LEVEL, SensorType.LOAD_CELL})


def _duplicates(names: list[str]) -> str | None:
    dup = [n for n, c in Counter(names).items() if c > 1]
    return dup[0] if dup else None


def check(s: Scenario, ctx: Context) -> None:
    _unique(s, ctx)
    stock = {(k.warehouse, k.sku) for k in s.skus()}
    lines = {line.id: line for line in s.lines}
    _check_lines(s, stock, ctx)
    _check_refill(s, ctx)
    for i, sig in enumerate(s.signals):
        _check_signal(sig, f"signals[{i}]", stock, lines, ctx)
    signals = {sig.id for sig in s.signals}
    _check_modbus(s, signals, ctx)
    for i, dev in enumerate(s.mqtt_devices):
        for name in dev.signals:
            if name not in signals:
                raise ctx.error(f"mqtt_devices[{i}].signals", f"no signal {name!r}")
    _check_faults(s, stock, signals, set(lines), ctx)


def _check_lines(s: Scenario, stock: set[tuple[str, str]], ctx: Context) -> None:
    warehouses = {w.id for w in s.warehouses}
    for i, line in enumerate(s.lines):
        if line.warehouse not in warehouses:
            raise ctx.error(f"lines[{i}].warehouse", f"no warehouse {line.warehouse!r}")
        if not line.products:
            raise ctx.error(f"lines[{i}].products", "a line needs at least one product")
        for j, product in enumerate(line.products):
            if (line.warehouse, product.sku) not in stock:
                raise ctx.error(
                    f"lines[{i}].products[{j}].sku",
                    f"SKU {product.sku!r} is not stocked in warehouse {line.warehouse!r}",
                )


def _check_refill(s: Scenario, ctx: Context) -> None:
    produced = {(line.warehouse, p.sku) for line in s.lines for p in line.products}
    for w_i, w in enumerate(s.warehouses):
        for k_i, k in enumerate(w.skus):
            if k.replenishment.policy is ReplenishPolicy.NONE and (w.id, k.sku) not in produced:
                raise ctx.error(
                    f"warehouses[{w_i}].skus[{k_i}].replenishment.policy",
                    f"'none' but no line produces {k.sku!r} into {w.id!r}: it could never refill",
                )


def _check_faults(
    s: Scenario, stock: set[tuple[str, str]], signals: set[str], lines: set[str], ctx: Context
) -> None:
    targets = {
        "signal": signals,
        "line": lines,
        "gateway": {d.gateway for d in s.mqtt_devices},
        "SKU": {k.sku for k in s.skus()},
    }
    for i, f in enumerate(s.faults):
        _check_target(f.kind, f.target, f"faults[{i}].target", targets, ctx)
        if f.warehouse is not None and (f.warehouse, f.target) not in stock:
            raise ctx.error(
                f"faults[{i}].warehouse", f"{f.warehouse!r} does not stock {f.target!r}"
            )
    for i, r in enumerate(s.random_faults):
        for name in r.targets:
            _check_target(r.kind, name, f"random_faults[{i}].targets", targets, ctx)


def _unique(s: Scenario, ctx: Context) -> None:
    for what, path, names in (
        ("warehouse", "warehouses", [w.id for w in s.warehouses]),
        ("line", "lines", [line.id for line in s.lines]),
        ("signal", "signals", [sig.id for sig in s.signals]),
        ("MQTT device", "mqtt_devices", [d.gateway for d in s.mqtt_devices]),
        ("Modbus unit", "modbus", [str(d.unit) for d in s.modbus_devices]),
    ):
        if dup := _duplicates(names):
            raise ctx.error(
                f"{path}[{names.index(dup, names.index(dup) + 1)}]", f"duplicate {what} {dup!r}"
            )
    for w_i, w in enumerate(s.warehouses):
        skus = [k.sku for k in w.skus]
        if dup := _duplicates(skus):
            raise ctx.error(f"warehouses[{w_i}].skus", f"SKU {dup!r} listed twice in {w.id!r}")
    for l_i, line in enumerate(s.lines):
        if dup := _duplicates([p.sku for p in line.products]):
            raise ctx.error(f"lines[{l_i}].products", f"SKU {dup!r} listed twice")


def _check_signal(
    sig: SignalSpec,
    path: str,
    stock: set[tuple[str, str]],
    lines: Mapping[str, object],
    ctx: Context,
) -> None:
    if sig.type in _STOCK_SENSORS:
        if sig.warehouse is None or sig.sku is None:
            raise ctx.error(path, f"a {sig.type} signal needs warehouse and sku")
        if (sig.warehouse, sig.sku) not in stock:
            raise ctx.error(f"{path}.sku", f"{sig.warehouse!r} does not stock {sig.sku!r}")
    else:
        if sig.line is None:
            raise ctx.error(path, f"a {sig.type} signal needs a line")
        if sig.line not in lines:
            raise ctx.error(f"{path}.line", f"no line {sig.line!r}")
    if sig.minimum is not None and sig.maximum is not None and sig.minimum >= sig.maximum:
        raise ctx.error(f"{path}.max", "must be greater than min")


def _check_modbus(s: Scenario, signals: set[str], ctx: Context) -> None:
    for d_i, dev in enumerate(s.modbus_devices):
        taken: dict[int, int] = {}
        for r_i, reg in enumerate(dev.registers):
            path = f"modbus[{d_i}].registers[{r_i}]"
            if reg.signal not in signals:
                raise ctx.error(f"{path}.signal", f"no signal {reg.signal!r}")
            for a in range(reg.address, reg.address + reg.width):
                if a > 65535:
                    raise ctx.error(f"{path}.address", "the value ends past register 65535")
                if a in taken:
                    raise ctx.error(
                        f"{path}.address", f"register {a} is already used by registers[{taken[a]}]"
                    )
                taken[a] = r_i


def _check_target(
    kind: FaultKind, name: str, path: str, targets: dict[str, set[str]], ctx: Context
) -> None:
    if kind in SIGNAL_FAULTS:
        what = "signal"
    elif kind in LINE_FAULTS:
        what = "line"
    elif kind in GATEWAY_FAULTS:
        what = "gateway"
    else:
        what = "SKU"
    if name not in targets[what]:
        hint = " (an MQTT device's gateway)" if what == "gateway" else ""
        raise ctx.error(path, f"a {kind} fault needs a {what}{hint}; there is no {what} {name!r}")
