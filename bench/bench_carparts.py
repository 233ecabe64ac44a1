"""Demand forecast accuracy on carparts (monthly, 2,674 SKUs): last 12 months held out.

Ours (the automatic model the service uses: ADI/CV² class -> SES/Holt or IMAPA; and each of our
kernels alone) beside statsforecast's CrostonClassic, CrostonSBA, TSB, ADIDA and Naive, all
fitted on the same training months in this run. Flat 12-month forecasts (every model here
forecasts a constant rate). Series with a missing month are left out (stated in the output).

Metrics, averaged over series: MASE (mean absolute error / in-sample mean absolute one-step
naive error), RMSSE (root of mean squared error / in-sample mean squared naive error; the M5
scaling), and bias as sum(forecast - actual) / sum(actual) over all series and months.
Series whose training months are constant have no scale and are left out of MASE/RMSSE only.
``bias(d)`` is the same bias over the series with any demand in the training months only: the
others are forecast zero by every model, and their block's under-forecast would otherwise
cancel the over-forecast of the rest (the validation criterion uses ``bias(d)``).

``--validate`` runs the same comparison without ever reading the held-out year, on three
origins inside the training months: fit on months 0-26 and score 27-38 (the last 12 training
months), and likewise fit on 0-20 / 0-14 and score the 12 months after; then the mean over the
three origins. Model choices for the service are made there; the held-out year only reports
them. (Bias changes sign from one origin to the next, so one origin alone says little about it.)

``--validate --rolling`` uses 13 monthly origins (fit on 0-26, 0-25, ... 0-14) instead of three,
for a steadier mean bias. ``--validate --candidates`` adds variants of the intermittent/lumpy
forecast (C1-C6 in ``candidates``) to the validation rows; a variant is chosen there, never on the
held-out year.

    python bench/bench_carparts.py [--data ../shared/data/demand/carparts.csv] [--validate]
        [--rolling] [--candidates]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import ADIDA, TSB, CrostonClassic, CrostonSBA, Naive

from cloud_service.analytics.kernels import auto as ka
from cloud_service.analytics.kernels import intermittent as ki
from cloud_service.analytics.kernels import smoothing as ks

H = 12
VALIDATION_ORIGINS = (27, 21, 15)  # months fitted on; each scored on the next 12
ROLLING_ORIGINS = tuple(range(27, 14, -1))  # --rolling: every month from 27 down to 15
TSB_GRID_P_HIGH = ka.TSB_GRID[ka.TSB_GRID >= 0.1]  # candidate: obsolescence shows sooner


def load(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    df = pd.read_csv(path)
    wide = df.pivot(index="series_id", columns="period", values="demand")
    complete = wide.dropna()
    return complete.index.to_numpy(), complete.to_numpy(dtype=np.float64), len(wide) - len(complete)


def metrics(train: np.ndarray, test: np.ndarray, fc: np.ndarray) -> tuple[float, float, float, int]:
    d = np.diff(train, axis=1)
    mae_scale = np.abs(d).mean(axis=1)
    mse_scale = (d**2).mean(axis=1)
    ok = mae_scale > 0
    err = fc - test
    mase = (np.abs(err).mean(axis=1)[ok] / mae_scale[ok]).mean()
    rmsse = np.sqrt((err**2).mean(axis=1)[ok] / mse_scale[ok]).mean()
    bias = err.sum() / test.sum()
    return float(mase), float(rmsse), float(bias), int(ok.sum())


def demanded_bias(train: np.ndarray, test: np.ndarray, fc: np.ndarray) -> float:
    """Bias over the series with any demand in ``train``: every model forecasts the others zero,
    and in the pooled bias that block's under-forecast cancels the rest's over-forecast."""
    live = train.sum(axis=1) > 0
    return float((fc[live] - test[live]).sum() / test[live].sum())


def ours(train: np.ndarray) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    _, _, rate, _, _ = ka.auto_forecast_many(train)
    out["flightdeck Auto"] = rate
    elapsed = time.perf_counter() - t0
    out["flightdeck Croston"] = np.array([ki.croston(y, 0.1, 1.0) for y in train])
    out["flightdeck SBA"] = np.array([ki.croston(y, 0.1, 0.95) for y in train])
    out["flightdeck TSB(0.1,0.1)"] = np.array([ki.tsb(y, 0.1, 0.1) for y in train])
    out["flightdeck ADIDA"] = np.array([ki.adida(y) for y in train])
    out["flightdeck IMAPA"] = np.array([ki.imapa(y) for y in train])
    out["flightdeck IMAPA(flat-12 alpha)"] = np.array(
        [ki.imapa_flat(y, ka.IMAPA_GRID, ka.FLAT_H) for y in train]
    )
    out["flightdeck IMAPA-SBA(flat-12)"] = np.array(
        [ki.imapa_flat(y, ka.IMAPA_GRID, ka.FLAT_H, True) for y in train]
    )
    out["flightdeck TSB(flat-12 alphas)"] = np.array(
        [ki.tsb_flat(y, ka.TSB_GRID, ka.FLAT_H) for y in train]
    )
    out["flightdeck SES(opt)"] = np.array(
        [ks.ses_level(y, ks.ses_grid_alpha(y, ka.SES_GRID)) for y in train]
    )
    print(f"flightdeck Auto: {train.shape[0]} series in {elapsed * 1e3:.1f} ms")
    return out


def candidates(train: np.ndarray) -> dict[str, np.ndarray]:
    """Variants of the automatic model's intermittent/lumpy forecast (the other classes keep
    Auto's forecast), for model choice on the validation origins only."""
    cls, _, rate, _, _ = ka.auto_forecast_many(train)
    idx = np.flatnonzero((cls == ki.C_INTERMITTENT) | (cls == ki.C_LUMPY))
    rows = [train[i] for i in idx]
    imapa = np.array([ki.imapa_flat(y, ka.IMAPA_GRID, ka.FLAT_H) for y in rows])
    tsb = np.array([ki.tsb_flat(y, ka.TSB_GRID, ka.FLAT_H) for y in rows])
    adida = np.array([ki.adida(y, ka.ADIDA_ITERS) for y in rows])
    imapa_sba = np.array([ki.imapa_flat(y, ka.IMAPA_GRID, ka.FLAT_H, True) for y in rows])
    tsb_hp = np.array([ki.tsb_flat_grids(y, ka.TSB_GRID, TSB_GRID_P_HIGH, ka.FLAT_H) for y in rows])
    w = ka.TSB_WEIGHT
    current = (1.0 - w) * imapa_sba + w * tsb
    assert np.allclose(current, rate[idx]), "candidate components do not rebuild Auto"
    parts = {
        "B0 .75 IMAPA + .25 TSB (before)": (1.0 - w) * imapa + w * tsb,
        "C1 thirds IMAPA/TSB/ADIDA": (imapa + tsb + adida) / 3.0,
        "C2 median IMAPA/TSB/ADIDA": np.median(np.stack([imapa, tsb, adida]), axis=0),
        "C3 .75 IMAPA-SBA + .25 TSB (Auto)": current,
        "C4 .75 IMAPA + .25 TSB(ap>=.1)": (1.0 - w) * imapa + w * tsb_hp,
        "C5 .5 IMAPA + .5 TSB": 0.5 * imapa + 0.5 * tsb,
        "C6 ADIDA (Auto before IMAPA)": adida,
    }
    out = {}
    for name, f in parts.items():
        r = rate.copy()
        r[idx] = f
        out[name] = r
    return out


def statsforecast_baselines(ids: np.ndarray, train: np.ndarray) -> dict[str, np.ndarray]:
    n, t = train.shape
    df = pd.DataFrame(
        {"unique_id": np.repeat(ids, t), "ds": np.tile(np.arange(t), n), "y": train.ravel()}
    )
    models = [
        CrostonClassic(),
        CrostonSBA(),
        TSB(alpha_d=0.1, alpha_p=0.1),
        ADIDA(),
        Naive(),
    ]
    sf = StatsForecast(models=models, freq=1, n_jobs=1)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = sf.forecast(df=df, h=H)
    elapsed = time.perf_counter() - t0
    print(f"statsforecast (5 models): {n} series in {elapsed:.2f} s")
    fc = fc.set_index("unique_id").loc[ids]
    out = {}
    for col, name in [
        ("CrostonClassic", "statsforecast CrostonClassic"),
        ("CrostonSBA", "statsforecast CrostonSBA"),
        ("TSB", "statsforecast TSB(0.1,0.1)"),
        ("ADIDA", "statsforecast ADIDA"),
        ("Naive", "statsforecast Naive"),
    ]:
        out[name] = fc[col].to_numpy().reshape(n, H)[:, 0]
    return out


def evaluate(
    ids: np.ndarray, train: np.ndarray, test: np.ndarray, with_candidates: bool = False
) -> dict[str, tuple[float, ...]]:
    """Fit every method on ``train``, print and return ``name -> (MASE, RMSSE, bias)``."""
    print(f"train {train.shape[1]} months, test {test.shape[1]}")
    auto_cls = ka.auto_forecast_many(train)[0]
    names = ["smooth", "erratic", "intermittent", "lumpy", "none"]
    counts = np.bincount(auto_cls.astype(np.int64), minlength=5)
    print("classes (train): " + ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True)))
    forecasts = ours(train)
    if with_candidates:
        forecasts.update(candidates(train))
    forecasts.update(statsforecast_baselines(ids, train))
    print()
    print(f"{'method':32s} {'MASE':>7s} {'RMSSE':>7s} {'bias':>8s} {'bias(d)':>8s}")
    scaled = 0
    out: dict[str, tuple[float, ...]] = {}
    for name, rate in forecasts.items():
        fc = np.repeat(rate[:, None], test.shape[1], axis=1)
        mase, rmsse, bias, scaled = metrics(train, test, fc)
        dbias = demanded_bias(train, test, fc)
        out[name] = (mase, rmsse, bias, dbias)
        print(f"{name:32s} {mase:7.4f} {rmsse:7.4f} {bias:+8.4f} {dbias:+8.4f}")
    demanded = int((train.sum(axis=1) > 0).sum())
    print(
        f"\n(MASE/RMSSE over {scaled} series with a non-zero in-sample scale; "
        f"bias(d) over the {demanded} with demand in the training months)\n"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(__file__).resolve().parent.parent.parent / "shared/data/demand/carparts.csv"
    ap.add_argument("--data", type=Path, default=default)
    ap.add_argument(
        "--validate",
        action="store_true",
        help="score on three origins inside the training months instead of the held-out year",
    )
    ap.add_argument(
        "--candidates",
        action="store_true",
        help="with --validate: also score candidate intermittent-demand variants (C1-C6)",
    )
    ap.add_argument(
        "--rolling",
        action="store_true",
        help="with --validate: 13 monthly origins (27 down to 15) instead of 27, 21, 15",
    )
    args = ap.parse_args(argv)
    if (args.candidates or args.rolling) and not args.validate:
        ap.error("--candidates and --rolling only with --validate (never on the held-out year)")
    if not args.data.exists():
        print(f"carparts data not found at {args.data}", file=sys.stderr)
        return 2
    ids, y, dropped = load(args.data)
    print(
        f"carparts: {y.shape[0]} complete series x {y.shape[1]} months "
        f"({dropped} with missing months left out)"
    )
    if not args.validate:
        evaluate(ids, y[:, :-H], y[:, -H:])
        return 0
    y = y[:, :-H]  # the held-out year is never read
    print("validation: the held-out year is dropped; origins inside the training months\n")
    origins = ROLLING_ORIGINS if args.rolling else VALIDATION_ORIGINS
    runs = []
    for origin in origins:
        print(f"== origin {origin}: fit on months 0-{origin - 1}, score {origin}-{origin + H - 1}")
        runs.append(evaluate(ids, y[:, :origin], y[:, origin : origin + H], args.candidates))
    print(f"== mean over origins {', '.join(map(str, origins))}")
    print(f"{'method':32s} {'MASE':>7s} {'RMSSE':>7s} {'|bias|':>8s} {'|bias(d)|':>9s}")
    for name in runs[0]:
        mase = float(np.mean([r[name][0] for r in runs]))
        rmsse = float(np.mean([r[name][1] for r in runs]))
        abias = float(np.mean([abs(r[name][2]) for r in runs]))
        adbias = float(np.mean([abs(r[name][3]) for r in runs]))
        print(f"{name:32s} {mase:7.4f} {rmsse:7.4f} {abias:8.4f} {adbias:9.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
