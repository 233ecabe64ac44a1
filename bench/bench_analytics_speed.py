"""Analytics speed on this machine (numba threads = all cores): anomaly updates, depletion
forecasts, statsforecast on the same models and data, and start-up with a warm numba cache.

    python bench/bench_analytics_speed.py [--series 100000] [--hours 2160] [--sf-series N]

* anomaly kernel: 10,000 series x 1,000 points already grouped by series (how the engine hands
  them to the kernel), and the engine's ``update`` on mixed batches of 100,000 readings
  (sorting by series and time included);
* depletion: ``--series`` synthetic hourly stock-level series of ``--hours`` points with
  receipts and sensor noise; consumption recovery, ADI/CV² classification, model and parameter
  selection, P10/P50/P90 dates and the reorder advice, all in the timing;
* statsforecast: the same four models (SES with optimised alpha, SBA, TSB, ADIDA) on the same
  daily consumption series, both on all of them in the same run (``--sf-series N`` runs
  statsforecast on the first N only and extrapolates its time linearly, said so in the output);
* start-up: ``warm_up()`` in a fresh interpreter with the cache already on disk (median of 3).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numba
import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import ADIDA, TSB, CrostonSBA, SimpleExponentialSmoothingOptimized

from cloud_service.analytics.engine import AnomalyEngine, warm_up
from cloud_service.analytics.kernels import anomaly as ak
from cloud_service.analytics.kernels import anomaly_batch as kb
from cloud_service.analytics.kernels import auto as ka
from cloud_service.analytics.kernels import depletion as kd
from cloud_service.analytics.kernels import intermittent as ki
from cloud_service.analytics.kernels import smoothing as ks

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_767_225_600_000


def bench_anomaly_kernel(n_series: int = 10_000, per: int = 1_000, reps: int = 5) -> None:
    rng = np.random.default_rng(1)
    state, profile = ak.new_state(n_series)
    params = ak.default_params(n_series)
    series = np.arange(n_series, dtype=np.int64)
    offsets = np.arange(n_series + 1, dtype=np.int64) * per
    x = rng.normal(0.0, 1.0, n_series * per)
    base = np.tile(np.arange(per, dtype=np.int64) * 60_000, n_series) + T0
    sc = np.empty(x.size)
    fl = np.empty(x.size, dtype=np.int8)
    rc = np.empty(x.size, dtype=np.int8)
    rates = []
    cpu_rates = []
    for r in range(reps + 1):
        ts = base + r * per * 60_000
        t = time.perf_counter()
        c = time.process_time()
        kb.update_grouped(state, profile, params, series, offsets, ts, x, sc, fl, rc)
        if r:  # the first pass touches fresh memory; not counted
            rates.append(x.size / (time.perf_counter() - t))
            cpu_rates.append(x.size / (time.process_time() - c))
    cores = os.cpu_count() or 1
    per_cpu = statistics.median(cpu_rates)
    print(
        f"anomaly kernel, grouped: {n_series} series x {per} points: "
        f"median {statistics.median(rates) / 1e6:.1f} M points/s wall (best "
        f"{max(rates) / 1e6:.1f}); {per_cpu / 1e6:.1f} M points per CPU-second of this "
        f"process, x{cores} cores if they were free: {per_cpu * cores / 1e6:.0f} M/s"
    )


def bench_anomaly_engine(n_series: int = 10_000, batch: int = 100_000, batches: int = 20) -> None:
    rng = np.random.default_rng(2)
    eng = AnomalyEngine(n_series)
    per = batch // n_series
    # as gateways send them: tick after tick, every series once per tick, in shuffled order
    ids = np.concatenate([rng.permutation(n_series) for _ in range(per)]).astype(np.int64)
    step = np.repeat(np.arange(per, dtype=np.int64), n_series) * 1000
    x = rng.normal(0.0, 1.0, ids.size)
    eng.update(ids, T0 + step, x, now_ms=T0)
    t = time.perf_counter()
    for b in range(1, batches + 1):
        eng.update(ids, T0 + b * per * 1000 + step, x, now_ms=T0 + b * per * 1000)
    rate = batches * ids.size / (time.perf_counter() - t)
    print(
        f"anomaly engine.update, batches of {batch} readings ({per} ticks x {n_series} series, "
        f"series interleaved; grouping included): {rate / 1e6:.1f} M points/s"
    )
    # the start-up rebuild: history read per series, ascending, through the same update
    points = 1_000
    hist_ids = np.repeat(np.arange(n_series, dtype=np.int64), points)
    hist_ts = np.tile(T0 + np.arange(points, dtype=np.int64) * 60_000, n_series)
    hist_x = rng.normal(0.0, 1.0, hist_ids.size)
    chunk = 500_000  # what live.replay feeds the engine at a time
    rates = []
    for _ in range(5):
        fresh = AnomalyEngine(n_series)
        t = time.perf_counter()
        for lo in range(0, hist_ids.size, chunk):
            sl = slice(lo, lo + chunk)
            fresh.rebuild(hist_ids[sl], hist_ts[sl], hist_x[sl])
        rates.append(hist_ids.size / (time.perf_counter() - t))
    print(
        f"anomaly engine.rebuild (the service's start-up path through update, chunks of "
        f"{chunk} points as live.replay feeds them), {n_series} series x {points} points: "
        f"median {statistics.median(rates) / 1e6:.1f} M points/s (best {max(rates) / 1e6:.1f})"
    )


def synth_levels(n: int, hours: int, seed: int = 3) -> np.ndarray:
    """Hourly stock levels: half smooth, half intermittent demand; receipts; sensor noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, hours))
    chunk = 5_000
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        p = np.where(rng.random(m) < 0.5, rng.uniform(0.03, 0.4, m), 1.0)
        size = rng.uniform(1.0, 20.0, m)
        dem = (rng.random((m, hours)) < p[:, None]) * rng.gamma(2.0, size[:, None] / 2.0)
        use = np.cumsum(dem, axis=1)
        cover = use[:, -1] / 3.0  # three receipts of a third of the period's demand
        level = 1.2 * cover[:, None] - use
        for k in (1, 2, 3):
            level[:, int(hours * k / 4) :] += cover[:, None]
        out[lo : lo + m] = level + rng.normal(0.0, 0.3, (m, hours))
    return out


def bench_depletion(n: int, hours: int) -> np.ndarray:
    levels = synth_levels(n, hours)
    sched = np.zeros((n, 1))
    lead = np.full(n, 72.0)
    review = np.full(n, 24.0)
    safety = np.full(n, 20.0)
    kd.depletion_many(
        levels[:8].copy(), sched[:8], sched[:8], lead[:8], review[:8], safety[:8], 1.64, hours, 24
    )
    times = []
    cpu = []
    for _ in range(3):
        t = time.perf_counter()
        c = time.process_time()
        out = kd.depletion_many(levels, sched, sched, lead, review, safety, 1.64, hours, 24)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    classes = np.bincount(out[:, kd.F_CLASS].astype(np.int64), minlength=5)
    print(
        f"depletion forecasts: {n} series x {hours} hourly points: "
        f"median {statistics.median(times):.2f} s (best {min(times):.2f}) incl. consumption "
        f"recovery, classification, model and parameter selection, quantiles, reorder; "
        f"classes smooth/erratic/intermittent/lumpy/none = {'/'.join(str(c) for c in classes)}; "
        f"{statistics.median(cpu):.2f} CPU-seconds (/{os.cpu_count()} cores if free: "
        f"{statistics.median(cpu) / (os.cpu_count() or 1):.2f} s)"
    )
    return levels


def daily_consumption(levels: np.ndarray) -> np.ndarray:
    rows = []
    for lv in levels:
        cons, _, _ = kd.recover_consumption(lv)
        rows.append(kd.bucket_sums(cons, 24))
    return np.array(rows)


def ours_models(y: np.ndarray) -> float:
    """Our kernels for the four models on every row, in parallel; seconds."""

    @numba.njit(parallel=True)
    def run(y: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
        out = np.empty((y.shape[0], 4))
        for i in numba.prange(y.shape[0]):
            row = y[i]
            out[i, 0] = ks.ses_level(row, ks.ses_optimal_alpha(row, 0.1, 0.3, 30))
            out[i, 1] = ki.croston(row, 0.1, 0.95)
            out[i, 2] = ki.tsb(row, 0.1, 0.1)
            out[i, 3] = ki.adida(row, 30)
        return out

    run(y[:4])
    t = time.perf_counter()
    run(y)
    return time.perf_counter() - t


def sf_models(y: np.ndarray) -> float:
    n, t_len = y.shape
    df = pd.DataFrame(
        {
            "unique_id": np.repeat(np.arange(n), t_len),
            "ds": np.tile(np.arange(t_len), n),
            "y": y.ravel(),
        }
    )
    models = [
        SimpleExponentialSmoothingOptimized(),
        CrostonSBA(),
        TSB(alpha_d=0.1, alpha_p=0.1),
        ADIDA(),
    ]
    sf = StatsForecast(models=models, freq=1, n_jobs=os.cpu_count() or 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sf.forecast(df=df.iloc[: 10 * t_len], h=1)  # start the pool, import everything
        t = time.perf_counter()
        sf.forecast(df=df, h=1)
    return time.perf_counter() - t


def bench_vs_statsforecast(levels: np.ndarray, sf_series: int) -> None:
    y = daily_consumption(levels)
    n = y.shape[0]
    ours = ours_models(y)
    k = min(sf_series, n) if sf_series > 0 else n
    theirs = sf_models(y[:k]) * n / k
    how = "the same series" if k == n else f"measured on {k} series, extrapolated x{n / k:.0f}"
    print(
        f"same 4 models (SES opt, SBA, TSB, ADIDA) on {n} daily consumption series of "
        f"{y.shape[1]} days: ours {ours:.2f} s; statsforecast {theirs:.1f} s "
        f"({how}; n_jobs={os.cpu_count()}); ours is {theirs / ours:.0f}x its throughput"
    )


def bench_startup() -> None:
    code = "from cloud_service.analytics.engine import warm_up; warm_up()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)  # warm cache
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - t)
    print(
        f"start-up (fresh interpreter: import + warm_up of every kernel, warm cache): "
        f"median {statistics.median(times):.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--hours", type=int, default=2160)
    ap.add_argument("--sf-series", type=int, default=0, help="0: all (the default)")
    args = ap.parse_args(argv)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numba {numba.__version__} ({numba.get_num_threads()} threads), numpy {np.__version__}; "
        f"load average before the run {os.getloadavg()[0]:.2f} (other processes share the cores)"
    )
    warm_up()
    bench_anomaly_kernel()
    bench_anomaly_engine()
    levels = bench_depletion(args.series, args.hours)
    bench_vs_statsforecast(levels, args.sf_series)
    bench_startup()
    _ = ka  # the automatic policy is what depletion_many runs
    return 0


if __name__ == "__main__":
    sys.exit(main())
