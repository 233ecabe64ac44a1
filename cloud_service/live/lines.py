"""A line counted per SKU, seen as one line: its total against the plan, and its mix drift.

When a line has one good-pieces counter per SKU (an MES that counts per product, or one PLC
counter per product), each counter has its own attainment, but those figures mislead the
moment a line makes its products in sequence: in the morning the SKU planned for the
afternoon stands "at 0 % of plan". The line's total is what a supervisor steers by, and the
mix drift (how far the proportions made are from the proportions planned, 0 to 1) says
whether the right products are being made. So the rules see the line once, with its mix
drift: through the line's own whole-line counter when it has one (a PLC's, more timely than
an MES polled every minute), else as the sum of its SKU counts; the per-SKU figures are
still written back to InfluxDB for the dashboards.

The mix is compared so far into the period (made against planned so far), so it reads high
while a sequenced line is still on its first products and settles by the period's end: a
rule on it wants a duration, or a threshold for the end of the period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cloud_service.alerts.inputs import ProductionFigures
from cloud_service.analytics.plan import Adherence, PlanPeriod, mix_drift
from cloud_service.live.series import SeriesInfo

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class CounterOutput:
    """One counter's figures against its plan period (what ``LiveAnalytics`` computes)."""

    info: SeriesInfo
    figures: ProductionFigures
    adherence: Adherence
    period: PlanPeriod  # its own targets (a SKU's count: that SKU's; none: zero over the line's)
    line_plan: PlanPeriod | None = None  # the line's targets for all its output, if any


@dataclass(frozen=True, slots=True)
class LineTotal:
    """A line counted per SKU, summed: the rules' figures and the write-back's."""

    figures: ProductionFigures
    adherence: Adherence
    mix_drift: float | None
    tags: dict[str, str]


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def line_totals(
    outputs: Sequence[CounterOutput], now_ms: int
) -> tuple[list[LineTotal], list[ProductionFigures]]:
    """The lines counted per SKU (two SKUs or more), summed; and the rules' figures: one per
    line counted per SKU (its own whole-line counter's if it has one, else the sum) with
    the mix drift, and every other counter's as it is."""
    groups: dict[tuple[str, str], list[CounterOutput]] = {}
    whole_counted: set[tuple[str, str]] = set()
    for o in outputs:
        spec = o.info.spec
        if spec is not None and spec.line:
            if spec.sku:
                groups.setdefault((o.info.site, spec.line), []).append(o)
            else:
                whole_counted.add((o.info.site, spec.line))
    # counted per SKU: two SKUs or more, or any beside the line's own counter (which then
    # speaks for the line: one figure per line, never the line and a SKU of it both)
    per_sku = {
        k: g
        for k, g in groups.items()
        if len({o.figures.sku for o in g}) >= 2 or k in whole_counted
    }
    grouped = {id(o) for g in per_sku.values() for o in g}
    totals = [_total(site, line, g, now_ms) for (site, line), g in sorted(per_sku.items())]
    unclaimed = {(t.figures.site, t.figures.line): t for t in totals}  # no own counter yet
    rest: list[ProductionFigures] = []
    for o in outputs:
        if id(o) in grouped:
            continue
        f = o.figures
        total = unclaimed.pop((f.site, f.line), None) if f.sku is None else None
        # the line's own counter (a PLC's, the more timely) speaks for the line, with the
        # mix drift of its per-SKU counts (an MES's) added
        rest.append(f if total is None else replace(f, mix_drift=total.mix_drift))
    rest.extend(t.figures for t in unclaimed.values())
    return totals, rest


def _total(site: str, line: str, group: Sequence[CounterOutput], now_ms: int) -> LineTotal:
    made: dict[str | None, float] = {}
    due: dict[str | None, float] = {}  # the plan's, once per SKU
    target: dict[str | None, float] = {}
    for o in group:  # two counters of one SKU (two stations) add up; its plan counts once
        sku = o.figures.sku
        made[sku] = made.get(sku, 0.0) + max(o.adherence.produced, 0.0)
        due[sku] = o.adherence.planned_so_far
        target[sku] = o.period.planned_qty
    whole = group[0].line_plan  # targets for all of the line's output, counted once
    produced, so_far, planned = sum(made.values()), sum(due.values()), sum(target.values())
    if whole is not None:
        so_far += whole.planned_by(now_ms)
        planned += whole.planned_qty
    projected = sum(o.adherence.projected_qty for o in group)
    ends = [o.period.end_ms for o in group] + ([whole.end_ms] if whole else [])
    remaining_h = max(max(ends) - now_ms, 0) / HOUR_MS
    gap = max(planned - produced, 0.0)
    required = gap / remaining_h if remaining_h > 0 else (math.inf if gap else 0.0)
    total = Adherence(
        produced=produced,
        planned_so_far=so_far,
        attainment=_ratio(produced, so_far),
        run_rate_per_hour=sum(o.adherence.run_rate_per_hour for o in group),
        projected_qty=projected,
        projected_attainment=_ratio(projected, planned),
        required_rate_per_hour=required,
    )
    # over the SKUs counted; one alone has no mix, and a plan with no SKU targets none either
    drift = (
        finite_or_none(mix_drift(list(made.values()), [due[k] for k in made]))
        if len(made) >= 2
        else None
    )
    first = group[0].figures
    figures = ProductionFigures(
        site=site,
        line=line,
        produced=produced,
        planned_so_far=so_far,
        attainment=finite_or_none(total.attainment),
        projected_attainment=finite_or_none(total.projected_attainment),
        gateway=first.gateway,
        period=first.period,
        unit=first.unit,
        required_rate_per_h=finite_or_none(required),
        mix_drift=drift,
    )
    tags = {"site": site, "line": line}
    if first.gateway:
        tags["gateway"] = first.gateway
    return LineTotal(figures, total, drift, tags)
