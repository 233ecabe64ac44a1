"""Consumption of one stock against the demand plan: a surge eating the buffer stock.

Consumption over the last window (``consumption_window_h``) is recovered from the hourly
levels, net of the output of the line that refills the stock (``trails.hourly_decrease``),
and set against the demand plan of the same window. How unusual the excess is comes in
standard deviations of the same window's excess on the past ``baseline_days`` days, so a SKU
whose demand always swings by half its plan does not page anyone for a normal Monday.
"""

from __future__ import annotations

import numpy as np

from cloud_service.alerts.inputs import ConsumptionFigures
from cloud_service.analytics.depletion import Production
from cloud_service.analytics.engine import F64, I64
from cloud_service.analytics.plan import DemandVsPlan, demand_vs_plan
from cloud_service.live.series import SeriesInfo
from cloud_service.live.settings import LiveSettings
from cloud_service.live.trails import HOUR_MS, hourly_decrease
from cloud_service.plans.model import PlanBook, SkuPolicy

DAY_MS = 24 * HOUR_MS


def consumption_against_plan(  # noqa: PLR0917
    info: SeriesInfo,
    policy: SkuPolicy | None,
    ts: I64,
    level: F64,
    production: Production | None,
    plans: PlanBook,
    now_ms: int,
    settings: LiveSettings,
) -> tuple[ConsumptionFigures, DemandVsPlan] | None:
    """The rules' figures and the write-back's, or None without a plan or a full window."""
    spec, sku = info.spec, info.spec.sku if info.spec else None
    assert spec is not None
    assert sku is not None
    window = int(settings.consumption_window_h * HOUR_MS)

    def planned(end: int) -> float:
        return plans.demand_between(info.site, sku, end - window, end, spec.location)

    planned_now = planned(now_ms)
    if planned_now <= 0:
        return None
    made = None
    if production is not None:  # the line's output between the level readings, netted in
        made = np.interp(ts, production.ts_ms, np.cumsum(production.increments()))
    hours, used = hourly_decrease(ts, level, made)
    if hours.size == 0 or hours[0] > now_ms - window:
        return None  # not a full window of history yet

    # consumption in (end - window, end] for now and the same window on past days, from
    # one cumulative sum (a refresh visits every stock signal of the fleet)
    ends = now_ms - DAY_MS * np.arange(settings.baseline_days + 1, dtype=np.int64)
    ends = ends[(ends == now_ms) | (ends - window >= hours[0])]
    cum = np.concatenate(([0.0], np.cumsum(used)))
    hi = np.searchsorted(hours, ends, side="right")
    lo = np.searchsorted(hours, ends - window, side="right")
    actual = cum[hi] - cum[lo]
    used_now = float(actual[0])
    excess_now = used_now - planned_now
    past = [float(a) - planned(int(e)) for a, e in zip(actual[1:], ends[1:], strict=True)]
    sigma = None
    if len(past) >= settings.min_baseline_days:
        sd = float(np.std(past, ddof=1))
        sigma = excess_now / max(sd, 1.0)
    safety = policy.safety_stock if policy else 0.0
    figures = ConsumptionFigures(
        site=info.site, sku=sku, actual=used_now, planned=planned_now,
        location=spec.location, gateway=info.gateway, unit=spec.unit or "units",
        buffer_used=max(excess_now, 0.0) / safety if safety > 0 else None,
        excess_sigma=sigma,
    )  # fmt: skip
    return figures, demand_vs_plan(used_now, planned_now, safety)
