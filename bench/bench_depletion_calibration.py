"""How often a real stockout comes before the forecast's P10, P50 and P90 (calibration).

For a well calibrated forecast the shares are about 10 %, 50 % and 90 %. Each trial draws an
hourly demand path, keeps ``--history`` hours of noisy stock readings (sensor noise sd 1),
forecasts with ``depletion.analyze`` (the live service's defaults, lead time 24 h) and checks
when the stock truly runs out. Demand patterns:

* ``poisson``: 10 a hour, every hour;
* ``intermittent``: an order in 10 % of the hours, gamma(2, 50) pieces;
* ``shifts``: 20 a hour for 12 h, then nothing for 12 h (a day shift), forecast at a random
  hour of the day.

A review found the lower tail too narrow and the day-shift case badly off (2026-11-26); this
prints the figures so any change to the quantiles can be measured against them.

    python bench/bench_depletion_calibration.py [--trials 300] [--history 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from cloud_service.analytics import depletion as dp

H = 3_600_000
PATTERNS = ("poisson", "intermittent", "shifts")


def demand(kind: str, rng: np.random.Generator, hours: int) -> np.ndarray:
    if kind == "poisson":
        return rng.poisson(10, hours).astype(float)
    if kind == "intermittent":
        return (rng.random(hours) < 0.1) * rng.gamma(2.0, 50.0, hours)
    day = np.tile([20.0] * 12 + [0.0] * 12, hours // 24 + 2)
    start = int(rng.integers(0, 24))
    return rng.poisson(day[start : start + hours]).astype(float)


def run(kind: str, trials: int, history: int, seed: int) -> tuple[int, float, float, float, float]:
    rng = np.random.default_rng(seed)
    below = np.zeros(3)
    widths = []
    n = 0
    for _ in range(trials):
        d = demand(kind, rng, 2000)
        stock = 4000.0 - np.cumsum(d)
        ts = np.arange(history, dtype=np.int64) * H
        levels = stock[:history] + rng.normal(0.0, 1.0, history)
        result = dp.analyze(ts, levels, lead_time_h=24)
        out = np.flatnonzero(stock <= 0)
        quantiles = result.stockout_ms
        if out.size == 0 or None in quantiles:
            continue
        actual = int(ts[-1]) + (int(out[0]) - (history - 1)) * H
        below += [actual < q for q in quantiles]  # type: ignore[operator]
        widths.append((quantiles[2] - quantiles[0]) / H)  # type: ignore[operator]
        n += 1
    share = below / max(n, 1)
    return n, float(share[0]), float(share[1]), float(share[2]), float(np.median(widths))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--history", type=int, default=300, help="hours of readings forecast from")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(
        f"{'pattern':14s} {'trials':>6s} {'<P10':>6s} {'<P50':>6s} {'<P90':>6s} {'P90-P10 h':>10s}"
    )
    print(f"{'(ideal)':14s} {'':>6s} {0.10:6.2f} {0.50:6.2f} {0.90:6.2f}")
    t0 = time.perf_counter()
    for kind in PATTERNS:
        n, p10, p50, p90, width = run(kind, args.trials, args.history, args.seed)
        print(f"{kind:14s} {n:6d} {p10:6.2f} {p50:6.2f} {p90:6.2f} {width:10.1f}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
