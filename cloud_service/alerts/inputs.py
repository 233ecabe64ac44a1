"""``ConditionInputs``: the snapshot the analytics engine fills and the rules read.

Plain frozen dataclasses, one per kind of subject, so the analytics engine (issue 6) can fill
them from its own results without importing anything else of the alert subsystem. Times are ms
since the epoch (UTC); durations are hours where planners think in hours. ``None`` means "not
known" (beyond the forecast horizon, never seen): a condition on an unknown figure never holds.
``gateway`` is the gateway whose data the figure comes from: its outage suppresses the alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StockFigures:
    """Depletion forecast of one SKU at one location (``analytics.depletion``)."""

    site: str
    sku: str
    stock: float
    location: str | None = None
    gateway: str | None = None
    unit: str = "units"
    stockout_p10_h: float | None = None  # hours from now until stock reaches zero
    stockout_p50_h: float | None = None
    stockout_p90_h: float | None = None
    lead_time_h: float | None = None  # replenishment lead time
    reorder_in_h: float | None = None  # hours until the latest order date (<= 0: order now)
    reorder_qty: float | None = None


@dataclass(frozen=True, slots=True)
class ConsumptionFigures:
    """Consumption of one SKU against the demand plan so far (``analytics.plan``)."""

    site: str
    sku: str
    actual: float
    planned: float
    location: str | None = None
    gateway: str | None = None
    unit: str = "units"
    buffer_used: float | None = None  # excess / safety stock (1.0: the buffer is gone)
    #: The excess over plan in standard deviations of past windows' excess (how unusual).
    excess_sigma: float | None = None


@dataclass(frozen=True, slots=True)
class ProductionFigures:
    """Output of one line against the production plan for the current period."""

    site: str
    line: str
    produced: float
    planned_so_far: float
    attainment: float | None  # produced / planned so far (0.71 = 71 %)
    projected_attainment: float | None  # projected output at period end / period plan
    sku: str | None = None
    gateway: str | None = None
    period: str = "shift"  # how the plan period is called in messages
    unit: str = "units"
    required_rate_per_h: float | None = None  # to still meet the plan
    #: A line counted per SKU: how far the mix made so far is from the plan's (0..1).
    mix_drift: float | None = None


@dataclass(frozen=True, slots=True)
class SignalFigures:
    """Health and anomaly state of one signal."""

    site: str
    gateway: str
    signal: str
    label: str = ""  # what people call it ("Load cell LC-7"); the id when empty
    sku: str | None = None
    line: str | None = None
    location: str | None = None
    anomaly_score: float | None = None  # 0..1; 0.5 is the detector's flag threshold
    anomaly_reason: str | None = None  # analytics.codes.Reason name: level, spike, shift, ...
    anomaly_count: int | None = None  # flagged episodes within the hold window
    stuck_since_ms: int | None = None  # flat since (None: moving)
    last_seen_ms: int | None = None
    period_s: float | None = None  # expected sampling period
    #: Stands for an alert raised before signal subjects named their gateway (subject: the
    #: bare signal id; ``gateway`` may be empty): no figures, so its condition ends and it
    #: clears (``explain.signal_subject``, docs/alerts.md).
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class GatewayFigures:
    """Connectivity of one gateway (its retained ``state`` and the last telemetry)."""

    site: str
    gateway: str
    online: bool
    last_seen_ms: int | None = None
    state_since_ms: int | None = None  # when it reported its current state


@dataclass(frozen=True, slots=True)
class ConditionInputs:
    """Everything rules may look at, as of ``now_ms``. Absent subjects are not evaluated."""

    now_ms: int
    stock: Sequence[StockFigures] = ()
    consumption: Sequence[ConsumptionFigures] = ()
    production: Sequence[ProductionFigures] = ()
    signals: Sequence[SignalFigures] = ()
    gateways: Sequence[GatewayFigures] = ()
