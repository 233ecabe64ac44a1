"""The live alert loop scored on the simulator's ground truth, as a planner gets its warnings.

``bench_ground_truth.py`` scores the depletion forecast offline (evaluated hourly on the
sensors' history). This one runs what the service runs: ``firmware_sim``'s plant in simulated
time (``tests/cloud_service/live/sim_feed.py``), its telemetry batches into
``LiveAnalytics``, the simulator's S&OP plan and the ERP's open orders synced every step,
``Monitor`` with the default rules and the alert lifecycle on a real SQLite alert store, one
10-minute step at a time for ``--days`` days. An episode of an alert runs from its RAISED (or
REACTIVATED: nobody acknowledges here) event to its CLEARED event, or to the end of the run.

Scenario: the default scenario with all its scheduled faults (``scenario_with`` every
``FaultKind``: flatline, drift, spikes, dropout, counter reset, line stoppage, the A-113 demand
surge at 200-248 h, gateway offline, clock jump; all within the first 13 days) and none of its
random faults, so both runs see the same plant. No ``HealthCore`` is wired: gateway-offline
cannot fire. ``refresh_budget_ms`` is None (every forecast pass completes in its step, so the
result does not depend on this machine's speed).

Scores of the ``stockout-risk`` rule per SKU, with the offline bench's definitions:

* **warned in time**: a real stockout at T (the truth's ``stockout`` records) counts when an
  episode that started at or before ``T - lead time`` is still active at T; only stockouts with
  ``T >= warm-up + lead time`` are counted (lead times from the plan book's ``SkuPolicy``);
* the median warning lead (T minus the start of the episode active at T) over counted
  stockouts warned at all;
* **false alarms**: episodes starting after the warm-up with no real stockout between their
  start and ``end + lead time``; per SKU-month over the evaluated span (warm-up to end);
* **active**: the share of the evaluated span an episode was active (an alert that is always
  on is "in time" for every stockout and worthless: read the hit rate with this).

An alert that clears and comes back within minutes splits its episode (and its lead): the
all-SKU row is printed again with episodes less than ``--merge-hours`` apart merged (the
offline bench's ``--clear-hours``), to show what the flapping costs. For reference, the
offline bench's ``P50`` rule (the same condition as ``stockout-risk``: the median stockout
within the lead time) is printed too (``--offline``, 10 s); its plant starts on 2026-01-01,
not 2026-01-07, with the random faults, so its stockouts are not the same ones.

The plan rules are set against the truth's plan deviations (beyond the scenario's own
tolerances: a line's day 10 % short of a SKU's target, a SKU's week of demand 25 % over its
plan): how many ``production-behind-plan`` / ``demand-surge`` episodes overlap one, and how
many deviations an episode overlapped. Coarse (a day, a week), but the truth's own measure.

Two runs in one invocation, the first the baseline of the second: the plant as its PLCs
alone show it (``mes_counts=False``), and with the MES's per-SKU good counts of line3 (which
makes A-113 and B-220). Every other rule's episodes are counted too, so alert volume is seen.

    python bench/bench_live_ground_truth.py [--days 90] [--seed 1] [--warmup-days 7]
        [--merge-hours 6] [--no-offline] [--rules FILE] [--plants both|plc|mes]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cloud_service" / "live"))

from sim_feed import (  # type: ignore[import-not-found]
    HOUR_MS,
    START_MS,
    LivePlant,
    scenario_with,
)
from warning_score import Score, score_episodes

from cloud_service.alerts.records import EventKind
from cloud_service.live.settings import LiveSettings
from firmware_sim.scenario.model import FaultKind, ReplenishPolicy

DAY_MS = 24 * HOUR_MS
RISK = "stockout-risk"
Episode = tuple[int, int | None]  # start ms, end ms (None: still active at the end)


@dataclass
class LiveRun:
    episodes: dict[tuple[str, str], list[Episode]]  # (rule, subject) -> episodes
    stockouts: dict[str, list[int]]  # "WAREHOUSE:SKU" -> stockout times
    lead_h: dict[str, float]  # "WAREHOUSE:SKU" -> lead time of the plan book's policy
    line_fed: set[str]  # SKUs refilled by a line only (no supplier orders)
    end_ms: int
    wall_s: float
    #: the truth's plan deviations beyond the scenario's tolerance, as (subject, start, end):
    #: a line's day with a SKU short of its target; a SKU's demand bucket above its plan
    short_days: list[tuple[str, int, int]] = field(default_factory=list)
    surge_weeks: list[tuple[str, int, int]] = field(default_factory=list)


async def simulate(
    days: int, seed: int, *, mes: bool, path: Path, rules: Path | None = None
) -> LiveRun:
    t0 = time.perf_counter()
    scenario = scenario_with(*FaultKind)
    plant = await LivePlant.open(
        scenario, path, days=days + 1, mes=mes, seed=seed, rules=rules,
        settings=LiveSettings(refresh_budget_ms=None),
    )  # fmt: skip
    feed, book = plant.feed, plant.book
    since: dict[tuple[str, str], int] = {}
    done: dict[tuple[str, str], list[Episode]] = {}
    now = START_MS
    try:
        async for now, events in plant.steps(days * 24):
            for e in events:
                key = (e.alert.key.rule, e.alert.key.subject)
                if e.kind in (EventKind.RAISED, EventKind.REACTIVATED):
                    since.setdefault(key, now)
                elif e.kind is EventKind.CLEARED and key in since:
                    done.setdefault(key, []).append((since.pop(key), now))
    finally:
        await plant.close()
    for key, start in since.items():
        done.setdefault(key, []).append((start, None))
    stockouts: dict[str, list[int]] = {}
    for rec in feed.world.truth.of_type("stockout"):
        stockouts.setdefault(f"{rec['warehouse']}:{rec['sku']}", []).append(int(rec["ts_ms"]))
    lead_h: dict[str, float] = {}
    line_fed: set[str] = set()
    stocked = {(s.warehouse, s.sku) for s in scenario.signals if s.sku and s.warehouse}
    for k in scenario.skus():
        if (k.warehouse, k.sku) not in stocked:
            continue  # no stock sensor: the live loop cannot see it
        policy = book.policy(scenario.site, k.sku, k.warehouse)
        lead_h[f"{k.warehouse}:{k.sku}"] = policy.lead_time_h if policy else 0.0
        if k.replenishment.policy is ReplenishPolicy.NONE:
            line_fed.add(f"{k.warehouse}:{k.sku}")
    run = LiveRun(done, stockouts, lead_h, line_fed, now, time.perf_counter() - t0)
    for rec in feed.world.truth.of_type("plan_deviation"):
        span = (int(rec["start_ms"]), int(rec["end_ms"]))
        if rec["scope"] == "production" and float(rec["deviation"]) < 0:
            run.short_days.append((str(rec["line"]), *span))
        elif rec["scope"] == "demand" and float(rec["deviation"]) > 0:
            run.surge_weeks.append((f"{rec['warehouse']}:{rec['sku']}", *span))
    return run


def score(eps: list[Episode], outs: list[int], lead_h: float, first: int, end: int) -> Score:
    closed = [(s, end if e is None else e) for s, e in eps]
    sc = score_episodes(closed, outs, round(lead_h * HOUR_MS), first)
    sc.active = sum(max(min(e, end) - max(s, first), 0) for s, e in closed)
    sc.span = end - first
    return sc


def merged(eps: list[Episode], gap_ms: int) -> list[Episode]:
    """Episodes less than ``gap_ms`` apart as one (a clear and a re-raise minutes later)."""
    out: list[Episode] = []
    for s, e in eps:
        last = out[-1][1] if out else None
        if last is not None and s - last < gap_ms:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def report(title: str, run: LiveRun, warmup_days: float, merge_h: float) -> None:
    first = START_MS + round(warmup_days * DAY_MS)
    months = (run.end_ms - first) / DAY_MS / (365.25 / 12)
    early = sum(s < first for (r, _), eps in run.episodes.items() if r == RISK for s, _ in eps)
    print(
        f"\n{title}: {run.wall_s:.1f} s wall; {months * len(run.lead_h):.1f} SKU-months "
        f"evaluated; {early} {RISK} episode(s) started in the warm-up (not scored)"
    )
    print(
        f"  {'SKU':16s} {'lead h':>6s} {'stockouts':>9s} {'in time':>7s} {'share':>6s} "
        f"{'median lead h':>13s} {'episodes':>8s} {'false':>5s} {'false/mo':>8s} {'active':>7s}"
    )
    total, joined = Score(), Score()
    for subject, lead in run.lead_h.items():
        eps = run.episodes.get((RISK, subject), [])
        outs = run.stockouts.get(subject, [])
        sc = score(eps, outs, lead, first, run.end_ms)
        name = subject + (" (line)" if subject in run.line_fed else "")
        print(sc.row(name, f"{lead:.0f}", months))
        total.add(sc)
        joined.add(score(merged(eps, round(merge_h * HOUR_MS)), outs, lead, first, run.end_ms))
    print(total.row("all SKUs", "", months * len(run.lead_h)))
    print(joined.row(f"merged <{merge_h:g} h", "", months * len(run.lead_h)))
    others: dict[str, Counter[str]] = {}
    for (rule, subject), eps in sorted(run.episodes.items()):
        if rule != RISK:
            others.setdefault(rule, Counter())[subject] += len(eps)
    print("  other rules (episodes over the whole run, warm-up included):")
    for rule, subjects in others.items():
        top = ", ".join(f"{s} {n}" for s, n in subjects.most_common(6))
        more = f", +{len(subjects) - 6} subjects" if len(subjects) > 6 else ""
        print(f"    {rule:24s} {sum(subjects.values()):5d}  ({top}{more})")
    if not others:
        print("    none")
    plan_rules = (
        ("production-behind-plan", run.short_days, "line-days short of plan by > tolerance"),
        ("demand-surge", run.surge_weeks, "SKU demand buckets above plan by > tolerance"),
    )
    print("  plan rules against the truth's plan deviations (episodes after the warm-up):")
    for rule, truth, what in plan_rules:
        spans = [(subj, st, run.end_ms if e is None else e)
               for (r, subj), ep in run.episodes.items() if r == rule
               for st, e in ep if st >= first]  # fmt: skip
        hit = sum(any(t == subj and a <= e and st <= b for t, a, b in truth)
                  for subj, st, e in spans)  # fmt: skip
        later = [(t, a, b) for t, a, b in truth if a >= first]
        seen = sum(any(subj == t and st <= b and a <= e for subj, st, e in spans)
                   for t, a, b in later)  # fmt: skip
        print(f"    {rule:24s} {hit}/{len(spans)} episodes overlap a deviation; "
              f"{seen}/{len(later)} {what} overlap an episode")  # fmt: skip


def offline_p50(days: int, seed: int, warmup_days: float) -> None:
    """The offline bench's P50 rule on its own plant (defaults as in its ``main``)."""
    # bench/ is the script's sys.path[0]; imported at run time, not type-checked from here
    off = importlib.import_module("bench_ground_truth")

    t0 = time.perf_counter()
    runs, start, end = off.simulate(days, seed, 600.0)
    kw = {"warmup_days": warmup_days, "history_days": 56.0, "every_h": 1.0}
    off.evaluate(runs, start, end, open_orders=True, production=True, **kw)
    first = start + round(warmup_days * DAY_MS)
    months = (end - first) / DAY_MS / (365.25 / 12)
    total = off.Score()
    print("\noffline bench_ground_truth, P50 (reference: its own plant from 2026-01-01):")
    for run in runs:
        sc = off.score(run, "P50", first, round(6 * HOUR_MS), HOUR_MS)
        total.add(sc)
        print(sc.row(f"{run.warehouse}:{run.sku}", f"{run.lead_h:.0f}", months))
    print(total.row("all SKUs", "", months * len(runs)))
    print(f"  {time.perf_counter() - t0:.1f} s wall")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warmup-days", type=float, default=7.0)
    ap.add_argument("--merge-hours", type=float, default=6.0)
    ap.add_argument("--offline", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--rules", type=Path, help="a rules TOML file instead of the defaults")
    ap.add_argument("--plants", choices=("both", "plc", "mes"), default="both")
    args = ap.parse_args(argv)
    print(
        f"firmware_sim default scenario, scheduled faults only, seed {args.seed}, {args.days} "
        f"days in 10-minute steps through LiveAnalytics + Monitor + default rules; "
        f"{RISK} scored after a {args.warmup_days:g}-day warm-up"
    )
    runs = [("PLCs only (mes_counts=False)", False), ("PLCs + MES per-SKU counts", True)]
    runs = [r for r in runs if args.plants == "both" or r[1] == (args.plants == "mes")]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (title, mes) in enumerate(runs):
            path = Path(tmp) / f"alerts{i}.sqlite"
            run = asyncio.run(simulate(args.days, args.seed, mes=mes, path=path, rules=args.rules))
            report(title, run, args.warmup_days, args.merge_hours)
    if args.offline:
        offline_p50(args.days, args.seed, args.warmup_days)
    return 0


if __name__ == "__main__":
    sys.exit(main())
