"""The live loop's own cost on this machine: what one monitor step and one forecast refresh
take for a fleet, on the event loop that ingest shares.

    python bench/bench_live.py [--signals 50000] [--stock 5000] [--days 35]

* ``on_batch``: the fleet's readings in 100-reading messages (one call each, as ingest makes
  them); baseline: the anomaly engine's ``update`` alone on the same batches.
* ``inputs``: one evaluation's figures for ``--signals`` signals, all quiet (the steady
  state) and with every signal lagging 8 s behind (an ingest backlog; no default rule looks
  before 10 minutes).
* ``refresh``: depletion, consumption against the demand plan and production against plan
  for ``--stock`` stock signals with ``--days`` of hourly history each, in one pass and in
  20 ms slices as the service runs it; baseline: the same number of ``depletion.analyze``
  calls alone (the kernel floor).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from cloud_service.alerts.rules import load_rules
from cloud_service.analytics import depletion
from cloud_service.analytics.engine import warm_up
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.monitor import silence_bounds
from cloud_service.plans.model import DemandTarget, PlanBook, SkuPolicy
from shared.messages import Birth, Reading, SignalKind, SignalSpec, TelemetryBatch

T0 = 1_767_744_000_000
HOUR = 3_600_000
DAY = 24 * HOUR


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _births(live: LiveAnalytics, signals: int, stock: int) -> list[str]:
    names = [f"x{i:06d}" for i in range(signals)]
    per_gw = 100
    for g in range(0, signals, per_gw):
        specs = [
            SignalSpec(
                id=n, kind=SignalKind.STOCK_LEVEL if i < stock else SignalKind.SENSOR,
                sku=f"S{i:06d}" if i < stock else None, location="W1" if i < stock else None,
                period_s=1.0,
            )
            for i, n in enumerate(names[g : g + per_gw], start=g)
        ]  # fmt: skip
        birth = Birth(
            gateway=f"g{g // per_gw}", site="p", boot="b", agent_version="t", config_hash="h",
            started_ms=T0, signals=specs,
        )  # fmt: skip
        live.on_birth("p", birth)
    return names


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--signals", type=int, default=50_000)
    ap.add_argument("--stock", type=int, default=5_000)
    ap.add_argument("--days", type=int, default=35)
    args = ap.parse_args()
    print(
        f"# bench_live on {platform.node()}: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    warm_up()
    book = PlanBook(
        skus=tuple(SkuPolicy("p", f"S{i:06d}", "W1", lead_time_h=48.0, safety_stock=100.0)
                   for i in range(args.stock)),
        demand=tuple(DemandTarget("p", f"S{i:06d}", T0 - 40 * DAY, T0 + 10 * DAY, 50.0 * 24, "W1")
                     for i in range(args.stock)),
    )  # fmt: skip
    live = LiveAnalytics(plans=book)
    names = _births(live, args.signals, args.stock)
    rng = np.random.default_rng(1)

    # stock history: hourly levels for --days, straight into the trails (as the start-up does)
    hours = T0 - DAY * args.days + HOUR * np.arange(args.days * 24, dtype=np.int64)
    for sid in range(args.stock):
        trail = live.trail(sid)
        assert trail is not None
        level = 5_000 - 2.0 * np.arange(hours.size) + rng.normal(0, 1, hours.size)
        for t, v in zip(hours.tolist(), level.tolist(), strict=True):
            trail.add(t, v)

    # on_batch: 10 s of the fleet at 1 Hz in 100-reading messages
    batches = []
    for k in range(10):
        t = T0 + k * 1000
        for g in range(0, args.signals, 100):
            readings = [Reading(n, t, float(rng.normal(50, 1))) for n in names[g : g + 100]]
            batches.append(
                TelemetryBatch(gateway=f"g{g // 100}", boot="b", seq=k + 1, readings=readings)
            )
    t = time.perf_counter()
    for i, b in enumerate(batches):
        live.on_batch("p", b.gateway, b, now_ms=T0 + (i // (args.signals // 100)) * 1000)
    feed_s = time.perf_counter() - t
    ids = [
        np.array(live.index.ids_of("p", b.gateway, [r.signal for r in b.readings])) for b in batches
    ]
    base = LiveAnalytics().engine
    base._ensure(args.signals)
    t = time.perf_counter()
    for i, (b, sid) in enumerate(zip(batches, ids, strict=True)):
        base.update(sid, np.full(sid.size, T0 + (i // (args.signals // 100)) * 1000),
                    np.array([r.value for r in b.readings]), now_ms=T0)  # fmt: skip
    engine_s = time.perf_counter() - t
    readings = sum(len(b.readings) for b in batches)
    print(f"on_batch: {readings / feed_s:,.0f} readings/s ({feed_s / len(batches) * 1e3:.3f} ms "
          f"per 100-reading message); baseline engine.update alone: {readings / engine_s:,.0f} "
          "readings/s")  # fmt: skip

    bounds = silence_bounds(load_rules())
    now = T0 + 10_000
    quiet = _median_ms(lambda: live.inputs(now, silence=bounds), 5)
    lagging = _median_ms(lambda: live.inputs(now + 8_000, silence=bounds), 5)
    old_way = _median_ms(lambda: live.inputs(now + 8_000, silence=((0.0, 2.0),)), 3)
    print(f"inputs for {args.signals:,} signals: {quiet:.1f} ms quiet, {lagging:.1f} ms with every "
          f"signal 8 s behind (default rules' bounds); {old_way:.1f} ms with the bound of two "
          "periods (before the fix)")  # fmt: skip

    gc.freeze()  # as the service does after start-up: long-lived objects out of the GC's way
    refresh = _median_ms(lambda: live.refresh(T0), 3)
    ts, lv = live.trail(0).series()  # type: ignore[union-attr]
    floor = _median_ms(
        lambda: [depletion.analyze(ts, lv, lead_time_h=48.0, safety_stock=100.0)
                 for _ in range(args.stock)], 3,
    )  # fmt: skip
    assert len(live.stock_figures) == args.stock
    slices = []
    while True:  # the same pass as the service runs it: 20 ms of work per evaluation
        t = time.perf_counter()
        done = live.refresh(T0, budget_ms=20.0)
        slices.append((time.perf_counter() - t) * 1000)
        if done:
            break
    print(f"refresh of {args.stock:,} stock signals x {args.days} days hourly: {refresh:.0f} ms "
          f"({refresh / args.stock * 1e3:.0f} µs each); baseline: depletion.analyze alone "
          f"{floor:.0f} ms")  # fmt: skip
    print(
        f"  as the service runs it (refresh_budget_ms = 20): {len(slices)} slices, the longest "
        f"{max(slices):.1f} ms of event loop, median {statistics.median(slices):.1f} ms"
    )


if __name__ == "__main__":
    main()
