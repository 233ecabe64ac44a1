"""Stockout warnings scored on the simulator's ground truth (default scenario of firmware_sim).

The simulator runs its default scenario (seed ``--seed``) for ``--days`` simulated days,
in-process (``firmware_sim.core.world.World``, the model the backfill and the servers use).
Its stock sensors (levels, and load cells converted to pieces with the scenario's tare and
unit weight) are what the service sees; its ground truth records every real stockout, the exact
event that took the *true* stock to zero.

Every ``--every`` simulated hours, for every SKU, the service's own depletion forecast
(``cloud_service.analytics.depletion.analyze``, defaults as in the live service) runs on the
last ``--history-days`` of readings up to that hour (no look-ahead), with the SKU's lead time
and safety stock from the scenario. A warning condition is then evaluated like an alert rule:

* ``P50``: the median stockout date is within the lead time (``stockout_p50_h <= lead_time_h``);
* ``P10``: the early (10 %) stockout date is within the lead time (``margin_p10_h < 0``, the
  default ``stockout_risk`` rule);
* ``reorder``: the latest order date has passed (``reorder_in_h <= 0``, ``reorder_now``).

A warning episode starts when the condition first holds and ends when it has been false for
``--clear-hours``. Scores:

* **warned in time**: a real stockout at T counts when an episode that started at or before
  ``T - lead time`` is still active at T (only stockouts with ``T >= warm-up + lead time``
  are counted: earlier ones could not be warned that early);
* the median warning lead (T minus the start of that episode, in hours) over all counted
  stockouts that were warned at all;
* **false alarms**: episodes with no real stockout between their start and ``end + lead
  time``; per SKU-month over the evaluated span;
* **active**: the share of forecasts for which the condition held (a warning that is always
  on is "in time" for every stockout and worthless: read the hit rate with this).

Open orders: with ``--open-orders`` (default) the forecast also gets the replenishment orders
the simulated plant has placed and not yet received, as an ERP would list them (quantity,
expected at order time + nominal lead time; orders observed hourly from the stock point's
on-order quantity). ``--no-open-orders`` uses the sensors alone.

Production: with ``--production`` (default) the forecast of a SKU made on a line also gets
(1) what the line made, from its good-pieces PLC counter as sampled (rollovers and resets
handled by ``depletion.counter_increments`` with the counter's width), attributed to the SKU of
the production order running at each sample (what the MES shows), netted into consumption; and
(2) the S&OP plan ahead as ``PlannedOutput``: each scheduled day's target per line and SKU,
made at the product's nominal rate from the start of the day's shifts (planned stops left
out), in the order the products are listed. ``--no-production`` is the sensors (and open
orders) alone, as before 2026-11-26 (E-500 is refilled by line1 only).

    python bench/bench_ground_truth.py [--days 180] [--seed 1] [--every 1] [--no-open-orders]
        [--no-production]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from warning_score import Score, score_episodes

from cloud_service.analytics.depletion import (
    PlannedOutput,
    Production,
    Receipt,
    analyze,
    counter_increments,
)

try:
    from firmware_sim.core.calendar import WeeklyCalendar, day_start
    from firmware_sim.core.plan import Plan
    from firmware_sim.core.sensors import Sample
    from firmware_sim.core.truth import Truth
    from firmware_sim.core.world import World
    from firmware_sim.scenario import default_scenario
    from firmware_sim.scenario.model import ReplenishPolicy, Scenario, SensorType
except ImportError as exc:  # pragma: no cover - the simulator is part of the repository
    print(f"firmware_sim not importable ({exc}): nothing to score", file=sys.stderr)
    sys.exit(2)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
RULES = ("P50", "P10", "reorder")


@dataclass(slots=True)
class SkuRun:
    warehouse: str
    sku: str
    lead_h: float
    safety: float
    signal: str
    offset: float
    weight: float
    supplied: bool  # replenished by supplier orders (sQ/sS), not by a line alone
    ts: list[int] = field(default_factory=list)
    units: list[float] = field(default_factory=list)
    orders: deque[tuple[int, int]] = field(default_factory=deque)  # (expected ms, qty)
    on_order: int = 0
    snaps: list[list[tuple[int, int]]] = field(default_factory=list)  # open orders, hourly
    stockouts: list[int] = field(default_factory=list)
    produced_ts: list[int] = field(default_factory=list)  # line output into this stock
    produced: list[float] = field(default_factory=list)
    plan: list[PlannedOutput] = field(default_factory=list)  # the S&OP plan, whole run
    evaluated: int = 0
    # per rule: evaluation times where the condition held
    held: dict[str, list[int]] = field(default_factory=lambda: {r: [] for r in RULES})


def simulate(days: int, seed: int, sample_s: float) -> tuple[list[SkuRun], int, int]:
    scenario = default_scenario()
    truth = Truth()
    world = World(scenario, seed=seed, start_ms=START_MS, sample_floor_s=sample_s, truth=truth)
    runs: dict[str, SkuRun] = {}
    for sig in scenario.signals:
        if sig.type not in {SensorType.LEVEL, SensorType.LOAD_CELL}:
            continue
        spec = next(k for k in scenario.skus() if (k.warehouse, k.sku) == (sig.warehouse, sig.sku))
        weight = spec.unit_weight_kg if sig.type is SensorType.LOAD_CELL else 1.0
        runs[sig.id] = SkuRun(
            spec.warehouse,
            spec.sku,
            spec.replenishment.lead_time_h,
            float(spec.safety_stock),
            sig.id,
            sig.offset if sig.type is SensorType.LOAD_CELL else 0.0,
            weight,
            spec.replenishment.policy is not ReplenishPolicy.NONE,
        )

    by_key = {(r.warehouse, r.sku): r for r in runs.values()}
    # good-pieces counters: signal -> line id (the MES tells which SKU the line is making)
    counters = {
        sig.id: sig.line
        for sig in scenario.signals
        if sig.type is SensorType.COUNTER and sig.line and sig.counter != "scrap"
    }
    raw: dict[str, tuple[list[int], list[float], list[str | None]]] = {
        sid: ([], [], []) for sid in counters
    }

    def on_sample(s: Sample) -> None:
        run = runs.get(s.signal)
        if run is not None and s.value is not None:
            run.ts.append(s.ts)
            run.units.append((s.value - run.offset) / run.weight)
        elif s.signal in counters and s.value is not None:
            ts_l, val_l, sku_l = raw[s.signal]
            ts_l.append(s.ts)
            val_l.append(s.value)
            sku_l.append(world.lines[counters[s.signal]].snapshot().sku)

    world.add_listener(on_sample)
    end = START_MS + days * DAY_MS
    t = START_MS
    while t < end:
        t = min(t + HOUR_MS, end)
        world.advance_to(t - 1)
        for run in runs.values():
            point = world.stock[(run.warehouse, run.sku)]
            delta = point.on_order - run.on_order
            if delta > 0:  # an order was placed this hour: expected after the lead time
                run.orders.append((t + round(run.lead_h * HOUR_MS), delta))
            elif delta < 0:  # receipts: the oldest orders arrived
                left = -delta
                while left > 0 and run.orders:
                    due, qty = run.orders.popleft()
                    if qty > left:
                        run.orders.appendleft((due, qty - left))
                        left = 0
                    else:
                        left -= qty
            run.on_order = point.on_order
            run.snaps.append(list(run.orders))
    for sid, line_id in counters.items():
        line = next(ln for ln in scenario.lines if ln.id == line_id)
        ts_l, val_l, sku_l = raw[sid]
        inc = counter_increments(np.asarray(val_l, dtype=np.float64), line.counter_bits)
        for t, q, sku in zip(ts_l, inc.tolist(), sku_l, strict=True):
            run_p = by_key.get((line.warehouse, sku)) if sku is not None else None
            if run_p is not None and q > 0:
                run_p.produced_ts.append(t)
                run_p.produced.append(q)
    for (wh, sku), planned in plan_outputs(
        world.plan, scenario, START_MS, end + 91 * DAY_MS
    ).items():
        if (wh, sku) in by_key:
            by_key[(wh, sku)].plan = planned
    for rec in truth.of_type("stockout"):
        hit = by_key.get((rec["warehouse"], rec["sku"]))
        if hit is not None:
            hit.stockouts.append(int(rec["ts_ms"]))
    return list(runs.values()), START_MS, end


def plan_outputs(
    plan: Plan, scenario: Scenario, start: int, end: int
) -> dict[tuple[str, str], list[PlannedOutput]]:
    """The S&OP plan as planned output per (warehouse, SKU): each day's target per line and
    SKU made at the product's nominal rate from the start of the day's shifts, planned stops
    left out, products in the order the line lists them."""
    out: dict[tuple[str, str], list[PlannedOutput]] = {}
    for line in scenario.lines:
        shifts = WeeklyCalendar(line.shifts)
        stops = WeeklyCalendar(line.planned_stops)
        rate = {p.sku: p.rate_per_h for p in line.products}
        day = day_start(start)
        while day < end:
            targets = [(sku, q) for lid, sku, q in plan.production_targets(day) if lid == line.id]
            # open time of the day: shifts minus planned stops, as [start, end) pieces
            pieces: list[tuple[int, int]] = []
            for s0, s1 in shifts.intervals(day, day + DAY_MS):
                cur = max(s0, day)
                for p0, p1 in stops.intervals(cur, s1):
                    if p0 > cur:
                        pieces.append((cur, p0))
                    cur = max(cur, p1)
                if cur < s1:
                    pieces.append((cur, s1))
            k = 0
            for sku, qty in targets:
                left_h = qty / rate[sku] if qty > 0 else 0.0
                while left_h > 1e-9 and k < len(pieces):
                    a, b = pieces[k]
                    take = min(left_h * HOUR_MS, b - a)
                    q = take / HOUR_MS * rate[sku]
                    out.setdefault((line.warehouse, sku), []).append(
                        PlannedOutput(int(a), int(a + take), q)
                    )
                    left_h -= take / HOUR_MS
                    if a + take >= b:
                        k += 1
                    else:
                        pieces[k] = (int(a + take), b)
            day += DAY_MS
    return out


def open_at(run: SkuRun, t: int) -> list[tuple[int, int]]:
    """Open orders as known at ``t``: the last hourly snapshot at or before it, still due."""
    k = (t - START_MS) // HOUR_MS - 1
    if k < 0 or not run.snaps:
        return []
    return [(due, qty) for due, qty in run.snaps[min(k, len(run.snaps) - 1)] if due > t]


def evaluate(
    runs: list[SkuRun],
    start: int,
    end: int,
    *,
    warmup_days: float,
    history_days: float,
    every_h: float,
    open_orders: bool,
    production: bool,
) -> int:
    """Run the forecasts; fill ``run.held``; returns the number of forecasts made."""
    n = 0
    step = round(every_h * HOUR_MS)
    for run in runs:
        run.evaluated = 0
    first = start + round(warmup_days * DAY_MS)
    for run in runs:
        ts = np.asarray(run.ts, dtype=np.int64)
        units = np.asarray(run.units, dtype=np.float64)
        p_ts = np.asarray(run.produced_ts, dtype=np.int64)
        p_q = np.asarray(run.produced, dtype=np.float64)
        plan_start = np.array([p.start_ms for p in run.plan], dtype=np.int64)
        plan_end = np.array([p.end_ms for p in run.plan], dtype=np.int64)
        made = production and p_ts.size > 0
        for t in range(first, end, step):
            hi = int(np.searchsorted(ts, t, side="right"))
            lo = int(np.searchsorted(ts, t - round(history_days * DAY_MS), side="left"))
            if hi - lo < 2:
                continue
            receipts = [Receipt(due, float(q)) for due, q in open_at(run, t)] if open_orders else []
            prod = None
            planned: list[PlannedOutput] = []
            if made:
                p_lo = int(np.searchsorted(p_ts, t - round(history_days * DAY_MS), side="left"))
                p_hi = int(np.searchsorted(p_ts, t, side="right"))
                prod = Production(p_ts[p_lo:p_hi], p_q[p_lo:p_hi], counter=False)
                # the plan from now on (what is planned before now is in the stock already)
                k0 = int(np.searchsorted(plan_end, t, side="right"))
                k1 = int(np.searchsorted(plan_start, t + 91 * DAY_MS, side="left"))
                planned = run.plan[k0:k1]
            try:
                res = analyze(
                    ts[lo:hi],
                    units[lo:hi],
                    lead_time_h=run.lead_h,
                    safety_stock=run.safety,
                    receipts=receipts,
                    production=prod,
                    planned_output=planned,
                )
            except ValueError:
                continue
            n += 1
            run.evaluated += 1
            h = res.hours_from(t)
            p50, p10, reorder = h["stockout_p50_h"], h["stockout_p10_h"], h["reorder_in_h"]
            if p50 is not None and p50 <= run.lead_h:
                run.held["P50"].append(t)
            if p10 is not None and p10 < run.lead_h:
                run.held["P10"].append(t)
            if reorder is not None and reorder <= 0:
                run.held["reorder"].append(t)
    return n


def episodes(times: list[int], clear_ms: int) -> list[tuple[int, int]]:
    """Maximal runs of warning times with gaps shorter than ``clear_ms``: ``(start, end)``."""
    out: list[tuple[int, int]] = []
    for t in times:
        if out and t - out[-1][1] < clear_ms:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def score(run: SkuRun, rule: str, first: int, clear_ms: int, every_ms: int) -> Score:
    """An episode counts at a stockout it ended one evaluation step before (the last
    evaluation that held may come up to a step before the stock hits zero)."""
    eps = episodes(run.held[rule], clear_ms)
    sc = score_episodes(eps, run.stockouts, round(run.lead_h * HOUR_MS), first, every_ms)
    sc.active, sc.span = len(run.held[rule]), run.evaluated
    return sc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--every", type=float, default=1.0, help="hours between forecasts")
    ap.add_argument("--warmup-days", type=float, default=14.0)
    ap.add_argument("--history-days", type=float, default=56.0)
    ap.add_argument("--clear-hours", type=float, default=6.0)
    ap.add_argument("--sample-period", type=float, default=600.0, help="sensor period, s")
    ap.add_argument("--open-orders", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--production", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    runs, start, end = simulate(args.days, args.seed, args.sample_period)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = evaluate(
        runs,
        start,
        end,
        warmup_days=args.warmup_days,
        history_days=args.history_days,
        every_h=args.every,
        open_orders=args.open_orders,
        production=args.production,
    )
    t_eval = time.perf_counter() - t0
    first = start + round(args.warmup_days * DAY_MS)
    months = (end - first) / DAY_MS / (365.25 / 12)
    print(
        f"firmware_sim default scenario, seed {args.seed}, {args.days} days "
        f"(simulated in {t_sim:.1f} s); {len(runs)} SKUs with a stock sensor; forecasts every "
        f"{args.every:g} h after a {args.warmup_days:g}-day warm-up on the last "
        f"{args.history_days:g} days: {n} forecasts in {t_eval:.1f} s; open orders "
        f"{'known (ERP)' if args.open_orders else 'unknown (sensors only)'}; production "
        f"{'counters and plan known (MES)' if args.production else 'unknown'}; alerts clear "
        f"after {args.clear_hours:g} h without the condition; {months * len(runs):.1f} "
        f"SKU-months"
    )
    clear_ms = round(args.clear_hours * HOUR_MS)
    every_ms = round(args.every * HOUR_MS)
    sku_months = months  # per SKU
    for rule in RULES:
        print(f"\nrule {rule}:")
        print(
            f"  {'SKU':16s} {'lead h':>6s} {'stockouts':>9s} {'in time':>7s} {'share':>6s} "
            f"{'median lead h':>13s} {'episodes':>8s} {'false':>5s} {'false/mo':>8s} "
            f"{'active':>7s}"
        )
        total, supplied = Score(), Score()
        for run in runs:
            sc = score(run, rule, first, clear_ms, every_ms)
            name = f"{run.warehouse}/{run.sku}" + ("" if run.supplied else " (line)")
            print(sc.row(name, f"{run.lead_h:.0f}", sku_months))
            total.add(sc)
            if run.supplied:
                supplied.add(sc)
        n_sup = sum(r.supplied for r in runs)
        print(supplied.row("supplier SKUs", "", sku_months * n_sup))
        print(total.row("all SKUs", "", sku_months * len(runs)))
        share = total.in_time / total.counted if total.counted else float("nan")
        print(
            f"  warned at least the lead time ahead: {total.in_time}/{total.counted} = "
            f"{share:.0%}; false alarms {total.false / (sku_months * len(runs)):.2f} per "
            f"SKU-month; condition active {total.active / max(total.span, 1):.0%} of the time"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
