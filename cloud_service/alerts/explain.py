"""What each rule type looks at: its subjects, the figures (metrics) it offers, and its words.

One ``Candidate`` per subject in the snapshot: the metrics a condition may test, the scope
fields a rule may filter on, and a ``words`` function that turns the metrics into the title,
explanation and recommended action people read. Metric names are ids (they travel in
``Alert.figures``); an unknown value is ``None`` and never satisfies a condition.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cloud_service.alerts.inputs import (
    ConditionInputs,
    ConsumptionFigures,
    GatewayFigures,
    ProductionFigures,
    SignalFigures,
    StockFigures,
)
from cloud_service.alerts.records import RuleType, compose_subject

Metrics = dict[str, float | None]
Words = tuple[str, str, str]  # title, message, action


@dataclass(frozen=True, slots=True)
class Candidate:
    site: str
    subject: str
    gateway: str | None
    scope: Mapping[str, str | None]  # sku, line, location, signal, gateway
    metrics: Metrics
    words: Callable[[], Words]


_STOCK: Final = frozenset(
    {"stock", "stockout_p10_h", "stockout_p50_h", "stockout_p90_h", "lead_time_h",
     "margin_p10_h", "margin_p50_h", "reorder_in_h", "reorder_qty"}
)  # fmt: skip
_CONSUMPTION: Final = frozenset(
    {"actual", "planned", "excess", "ratio", "buffer_used", "excess_sigma"}
)
_PRODUCTION: Final = frozenset(
    {"produced", "planned_so_far", "attainment", "projected_attainment", "required_rate_per_h",
     "mix_drift"}
)  # fmt: skip
_SIGNAL: Final = frozenset(
    {"anomaly_score", "anomaly_count", "stuck_min", "silent_min", "silent_periods"}
)
_GATEWAY: Final = frozenset({"offline", "silent_min"})

METRICS: Final[Mapping[RuleType, frozenset[str]]] = {
    RuleType.STOCKOUT_RISK: _STOCK,
    RuleType.REORDER_NOW: _STOCK,
    RuleType.CONSUMPTION_ABOVE_PLAN: _CONSUMPTION,
    RuleType.PRODUCTION_BELOW_PLAN: _PRODUCTION,
    RuleType.SIGNAL_ANOMALY: _SIGNAL,
    RuleType.SENSOR_STUCK: _SIGNAL,
    RuleType.NO_DATA: _SIGNAL,
    RuleType.GATEWAY_OFFLINE: _GATEWAY,
}

#: (metric, op, threshold, deadband) used when a rule lists no conditions of its own.
DEFAULT_CONDITIONS: Final[Mapping[RuleType, tuple[tuple[str, str, float, float], ...]]] = {
    RuleType.STOCKOUT_RISK: (("margin_p10_h", "<", 0.0, 2.0),),
    RuleType.REORDER_NOW: (("reorder_in_h", "<=", 0.0, 1.0),),
    RuleType.CONSUMPTION_ABOVE_PLAN: (("ratio", ">=", 1.2, 0.05),),
    RuleType.PRODUCTION_BELOW_PLAN: (("projected_attainment", "<", 0.9, 0.02),),
    RuleType.SIGNAL_ANOMALY: (("anomaly_score", ">=", 0.5, 0.1),),
    RuleType.SENSOR_STUCK: (("stuck_min", ">=", 15.0, 0.0),),
    RuleType.NO_DATA: (("silent_min", ">=", 10.0, 0.0),),
    RuleType.GATEWAY_OFFLINE: (("offline", ">=", 1.0, 0.0), ("silent_min", ">=", 5.0, 0.0)),
}


def candidates(rule_type: RuleType, inputs: ConditionInputs) -> Iterator[Candidate]:
    now = inputs.now_ms
    if rule_type in (RuleType.STOCKOUT_RISK, RuleType.REORDER_NOW):
        yield from (_stock(f) for f in inputs.stock)
    elif rule_type == RuleType.CONSUMPTION_ABOVE_PLAN:
        yield from (_consumption(f) for f in inputs.consumption)
    elif rule_type == RuleType.PRODUCTION_BELOW_PLAN:
        yield from (_production(f) for f in inputs.production)
    elif rule_type == RuleType.GATEWAY_OFFLINE:
        yield from (_gateway(f, now) for f in inputs.gateways)
    else:
        yield from (_signal(rule_type, f, now) for f in inputs.signals)


def _stock(f: StockFigures) -> Candidate:
    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    m: Metrics = {
        "stock": f.stock, "stockout_p10_h": f.stockout_p10_h, "stockout_p50_h": f.stockout_p50_h,
        "stockout_p90_h": f.stockout_p90_h, "lead_time_h": f.lead_time_h,
        "margin_p10_h": diff(f.stockout_p10_h, f.lead_time_h),
        "margin_p50_h": diff(f.stockout_p50_h, f.lead_time_h),
        "reorder_in_h": f.reorder_in_h, "reorder_qty": f.reorder_qty,
    }  # fmt: skip
    name = f"SKU {f.sku} at {f.location or f.site}"

    def words() -> Words:
        p50, p10 = f.stockout_p50_h, f.stockout_p10_h
        if f.stock <= 0:  # no forecast to quote: the planner must hear it is out already
            title = f"{name} is out of stock"
            message = title
        else:
            title = f"{name} runs out in {hours(p50)}" if p50 is not None else f"{name} may run out"
            parts = [f"P50; P10 {hours(p10)}"] if p10 is not None and p50 is not None else []
            message = title + (f" ({'; '.join(parts)})" if parts else "")
        if f.lead_time_h is not None:
            message += f"; lead time {hours(f.lead_time_h)}"
        if f.reorder_qty is not None and f.reorder_qty > 0:
            r = f.reorder_in_h
            when = "today" if r is None or r <= 24 else f"within {hours(r)}"
            action = f"Order {qty(f.reorder_qty)} {f.unit} {when}"
        else:
            action = f"Expedite replenishment of SKU {f.sku} or reallocate stock"
        return title, f"{message}: {action[0].lower()}{action[1:]}", action

    subject = compose_subject(f.location, f.sku)
    scope = {"sku": f.sku, "location": f.location, "gateway": f.gateway}
    return Candidate(f.site, subject, f.gateway, scope, m, words)


def _consumption(f: ConsumptionFigures) -> Candidate:
    ratio = f.actual / f.planned if f.planned > 0 else None
    m: Metrics = {
        "actual": f.actual, "planned": f.planned, "excess": f.actual - f.planned,
        "ratio": ratio, "buffer_used": f.buffer_used, "excess_sigma": f.excess_sigma,
    }  # fmt: skip
    name = f"SKU {f.sku} at {f.location or f.site}"

    def words() -> Words:
        level = f"{ratio:.0%} of plan" if ratio is not None else "above plan"
        title = f"Consumption of {name} at {level}"
        message = f"{qty(f.actual)} {f.unit} consumed against {qty(f.planned)} planned so far"
        if f.buffer_used is not None and math.isfinite(f.buffer_used):
            message += f"; {f.buffer_used:.0%} of the safety stock used"
        action = f"Review the demand plan and bring replenishment of SKU {f.sku} forward"
        return title, message, action

    subject = compose_subject(f.location, f.sku)
    scope = {"sku": f.sku, "location": f.location, "gateway": f.gateway}
    return Candidate(f.site, subject, f.gateway, scope, m, words)


def _production(f: ProductionFigures) -> Candidate:
    m: Metrics = {
        "produced": f.produced, "planned_so_far": f.planned_so_far, "attainment": f.attainment,
        "projected_attainment": f.projected_attainment,
        "required_rate_per_h": f.required_rate_per_h, "mix_drift": f.mix_drift,
    }  # fmt: skip

    def words() -> Words:
        att, proj = f.attainment, f.projected_attainment
        title = f"Line {f.line}"
        title += f" at {att:.0%} of plan" if att is not None else " behind plan"
        if proj is not None:
            title += f", projected {proj:.0%} at {f.period} end"
        message = f"{qty(f.produced)} of {qty(f.planned_so_far)} {f.unit} planned so far"
        if f.sku:
            message += f" (SKU {f.sku})"
        if f.mix_drift is not None:
            message += f"; {f.mix_drift:.0%} of the output off the planned mix"
        if f.required_rate_per_h is not None and math.isfinite(f.required_rate_per_h):
            rate = qty(f.required_rate_per_h)
            action = f"Raise line {f.line} to {rate} {f.unit}/h or re-plan the {f.period}"
        else:
            action = f"Check line {f.line} for stoppages or re-plan the {f.period}"
        return title, message, action

    subject = compose_subject(f.line, f.sku)
    scope = {"line": f.line, "sku": f.sku, "gateway": f.gateway}
    return Candidate(f.site, subject, f.gateway, scope, m, words)


def signal_subject(gateway: str, signal: str) -> str:
    """The subject of a signal's alerts: ``gateway:signal``. Signal ids are unique per
    gateway, not per site (two lines running the same PLC programme share tag names), so a
    signal's alerts are its gateway's: one alert per signal and gateway.

    Ids may contain ``:``, so ``gw`` + ``a:b`` and ``gw:a`` + ``b`` would both read
    ``gw:a:b``: the plain form is kept for gateways without ``:`` (the first ``:`` then
    splits it back), and a gateway with one gets a hashed subject of both parts.
    """
    if ":" not in gateway:
        return compose_subject(gateway, signal)
    digest = hashlib.blake2b(f"{gateway}\0{signal}".encode(), digest_size=6).hexdigest()
    return f"{gateway[:40].rstrip(':.-_')}-{digest}"


def _signal(rule_type: RuleType, f: SignalFigures, now: int) -> Candidate:
    if f.legacy:
        return _legacy_signal(f)
    silent = None if f.last_seen_ms is None else max(now - f.last_seen_ms, 0) / 60_000
    periods = None if silent is None or not f.period_s else silent * 60 / f.period_s
    stuck = None if f.stuck_since_ms is None else max(now - f.stuck_since_ms, 0) / 60_000
    m: Metrics = {
        "anomaly_score": f.anomaly_score, "anomaly_count": f.anomaly_count,
        "stuck_min": stuck, "silent_min": silent,
        "silent_periods": periods,
    }  # fmt: skip
    label = f.label or f.signal

    def words() -> Words:
        if rule_type == RuleType.SENSOR_STUCK:
            title = f"{label} stuck since {clock(f.stuck_since_ms)}"
            message = f"{label} has not changed for {minutes(stuck)}"
            action = f"Check {label}: a frozen reading hides real changes"
        elif rule_type == RuleType.NO_DATA:
            title = f"No data from {label} for {minutes(silent)}"
            message = f"Last good reading at {clock(f.last_seen_ms)}"
            if f.period_s:
                message += f"; expected every {f.period_s:g} s"
            action = f"Check {label} and its connection to gateway {f.gateway}"
        else:
            title = f"Unusual {f.anomaly_reason or 'behaviour'} on {label}"
            score = f.anomaly_score
            message = f"Anomaly score {score:.2f}" if score is not None else "Anomaly flagged"
            message += f" on {label} (signal {f.signal}, gateway {f.gateway})"
            action = f"Check {label} and the process it measures"
        return title, message, action

    scope = {"signal": f.signal, "sku": f.sku, "line": f.line, "location": f.location,
             "gateway": f.gateway}  # fmt: skip
    return Candidate(f.site, signal_subject(f.gateway, f.signal), f.gateway, scope, m, words)


def _legacy_signal(f: SignalFigures) -> Candidate:
    """An alert raised before signal subjects named their gateway (its subject is the bare
    signal id): no rule evaluates that subject any more, so it is given unknown figures, its
    condition ends and it clears after its rule's off-delay; a condition that still holds has
    raised (or raises) its alert per gateway meanwhile."""
    m: Metrics = dict.fromkeys(_SIGNAL)
    label = f.label or f.signal

    def words() -> Words:
        title = f"{label}: now alerted per gateway"
        message = (
            f"This alert on signal {f.signal} was raised before signal alerts named their "
            "gateway; it is cleared, and a condition that still holds is alerted on per gateway"
        )
        return title, message, f"Acknowledge it; follow the alert of {label} per gateway, if any"

    scope = {"signal": f.signal, "sku": f.sku, "line": f.line, "location": f.location,
             "gateway": f.gateway or None}  # fmt: skip
    return Candidate(f.site, f.signal, f.gateway or None, scope, m, words)


def _gateway(f: GatewayFigures, now: int) -> Candidate:
    silent = None if f.last_seen_ms is None else max(now - f.last_seen_ms, 0) / 60_000
    m: Metrics = {"offline": 0.0 if f.online else 1.0, "silent_min": silent}

    def words() -> Words:
        since = f.last_seen_ms if f.online or f.state_since_ms is None else f.state_since_ms
        title = f"Gateway {f.gateway} at {f.site} offline"
        if since is not None:
            title += f" since {clock(since)}"
        message = f"Last data at {clock(f.last_seen_ms)}; alerts of its devices are suppressed"
        action = f"Check power and network of gateway {f.gateway}; it replays its spool on return"
        return title, message, action

    return Candidate(f.site, f.gateway, f.gateway, {"gateway": f.gateway}, m, words)


def hours(h: float | None) -> str:
    if h is None or not math.isfinite(h):
        return "n/a"
    return f"{h:.0f} h" if abs(h) < 96 else f"{h / 24:.1f} d"


def minutes(m: float | None) -> str:
    if m is None or not math.isfinite(m):
        return "n/a"
    return f"{m:.0f} min" if m < 120 else f"{m / 60:.1f} h"


def qty(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "n/a"


def clock(ms: int | None) -> str:
    if ms is None:
        return "unknown"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M UTC")
