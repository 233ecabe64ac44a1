"""NAB scoring (Numenta Anomaly Benchmark), re-implemented from its published rules.

Rules (``../shared/data/README.md``, matching NAB's ``sweeper.py`` and ``runner.py``):
the first ``min(floor(0.15 n), 750)`` rows are probation and not scored; inside a window a row
is worth ``scaled_sigmoid(-(right - i + 1) / width) / scaled_sigmoid(-1)`` times the TP weight
and only the best (earliest) detection of a window counts; a detection outside every window
costs the FP weight times ``scaled_sigmoid(distance past the previous window / (width - 1))``
(``-1`` before any window); an undetected window costs the FN weight. The corpus score is
normalised as ``100 (S - S_null) / (S_perfect - S_null)`` with ``S_null = -fn * windows`` (no
detection) and ``S_perfect = tp * windows`` (NAB's runner). A threshold sweep picks the one
threshold that maximises the corpus score (NAB's optimiser), not one per file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

OUTSIDE: Final = -1  # window id of a scorable row outside every window
PROBATION: Final = -2  # window id of a row in the probation period


@dataclass(frozen=True, slots=True)
class Profile:
    tp: float
    fn: float
    fp: float


PROFILES: Final = {
    "standard": Profile(tp=1.0, fn=1.0, fp=0.11),
    "reward_low_fp": Profile(tp=1.0, fn=1.0, fp=0.22),
    "reward_low_fn": Profile(tp=1.0, fn=2.0, fp=0.11),
}


def scaled_sigmoid(x: float) -> float:
    """``2 sigmoid(-5x) - 1``, and ``-1`` from ``x >= 3`` on (NAB's ``scaledSigmoid``)."""
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probation_length(n: int, percent: float = 0.15) -> float:
    return min(math.floor(percent * n), percent * 5000)


@dataclass(frozen=True, slots=True)
class Layout:
    """Per-row scoring weights of one file for one profile.

    ``weight[i]`` is what a detection at row ``i`` adds (TP) or costs (FP, negative);
    ``window[i]`` is the window id, :data:`OUTSIDE` or :data:`PROBATION`.
    """

    weight: F64
    window: I64
    n_windows: int


def layout(n: int, windows: Sequence[tuple[int, int]], profile: Profile) -> Layout:
    """Weights for ``n`` rows with inclusive ``windows`` given as row indices, sorted, disjoint."""
    max_tp = scaled_sigmoid(-1.0)
    weight = np.empty(n, dtype=np.float64)
    window = np.full(n, OUTSIDE, dtype=np.int64)
    prev_right = -1
    prev_width = 0.0
    wins = sorted(windows)
    k = 0
    i = 0
    while i < n:
        if k < len(wins) and i == wins[k][0]:
            left, right = wins[k]
            width = float(right - left + 1)
            for j in range(left, min(right, n - 1) + 1):
                weight[j] = scaled_sigmoid(-(right - j + 1) / width) * profile.tp / max_tp
                window[j] = k
            prev_right, prev_width = right, width
            k += 1
            i = right + 1
            continue
        if prev_right < 0:
            pos = 3.0
        else:
            pos = abs(prev_right - i) / (prev_width - 1.0) if prev_width > 1 else 3.0
        weight[i] = scaled_sigmoid(pos) * profile.fp
        i += 1
    window[: math.ceil(probation_length(n))] = PROBATION
    return Layout(weight=weight, window=window, n_windows=len(wins))


@dataclass(frozen=True, slots=True)
class FileScore:
    score: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside windows (after probation)


def score_file(detected: npt.NDArray[np.bool_], lay: Layout, profile: Profile) -> FileScore:
    """Score boolean detections of one file (the rows where the detector fired)."""
    det = np.asarray(detected, dtype=bool)
    outside = det & (lay.window == OUTSIDE)
    fp_sum = float(lay.weight[outside].sum())
    total = fp_sum
    tp = 0
    scored_windows = {int(w) for w in np.unique(lay.window) if w >= 0}
    for w in scored_windows:
        hits = det & (lay.window == w)
        if hits.any():
            total += float(lay.weight[hits].max())
            tp += 1
        else:
            total -= profile.fn
    return FileScore(
        score=total, tp=tp, fn=len(scored_windows) - tp, fp=int(np.count_nonzero(outside))
    )


def normalise(total: float, n_windows: int, profile: Profile) -> float:
    null = -profile.fn * n_windows
    perfect = profile.tp * n_windows
    return 100.0 * (total - null) / (perfect - null)


def sweep(
    scores: Sequence[F64], layouts: Sequence[Layout], profile: Profile
) -> tuple[float, float]:
    """Best corpus threshold and its raw score: detections are rows with ``score >= threshold``.

    NAB's optimiser walks the rows of all files by descending score; so do we, exactly, with
    vectorised bookkeeping: the score at a threshold is the FP sum so far plus, per window, the
    best weight reached so far (or ``-fn`` while none).
    """
    vals: list[F64] = []
    wts: list[F64] = []
    wid: list[I64] = []
    offset = 0
    n_windows = 0
    for s, lay in zip(scores, layouts, strict=True):
        keep = lay.window != PROBATION
        vals.append(np.asarray(s, dtype=np.float64)[keep])
        wts.append(lay.weight[keep])
        w = lay.window[keep]
        wid.append(np.where(w >= 0, w + offset, OUTSIDE))
        ids = np.unique(w[w >= 0])
        offset += lay.n_windows
        n_windows += ids.size
    v = np.concatenate(vals)
    wt = np.concatenate(wts)
    wi = np.concatenate(wid)
    order = np.argsort(-v, kind="stable")
    v, wt, wi = v[order], wt[order], wi[order]
    best_window = np.full(offset, -profile.fn)
    scored = np.zeros(offset, dtype=bool)
    scored[np.unique(wi[wi >= 0])] = True
    current = -profile.fn * float(scored.sum())
    best_score, best_thr = current, math.inf
    fp = 0.0
    i = 0
    n = v.size
    while i < n:
        j = i
        while j < n and v[j] == v[i]:
            if wi[j] == OUTSIDE:
                fp += wt[j]
            elif wt[j] > best_window[wi[j]]:
                current += wt[j] - best_window[wi[j]]
                best_window[wi[j]] = wt[j]
            j += 1
        total = current + fp
        if total > best_score:
            best_score, best_thr = total, float(v[i])
        i = j
    return best_thr, best_score


@dataclass(frozen=True, slots=True)
class NabFile:
    name: str  # e.g. "realKnownCause/nyc_taxi.csv"
    timestamps: npt.NDArray[np.datetime64]
    values: F64
    windows: list[tuple[int, int]]  # inclusive row indices


def load_corpus(root: Path) -> list[NabFile]:
    """Read ``root/data/<group>/<file>.csv`` and ``root/combined_windows.json``."""
    spec = json.loads((root / "combined_windows.json").read_text())
    files = []
    for name in sorted(spec):
        raw = np.loadtxt(
            root / "data" / name, delimiter=",", skiprows=1, dtype=str, ndmin=2, comments=None
        )
        ts = raw[:, 0].astype("datetime64[s]")
        index = {t: i for i, t in enumerate(ts.astype(np.int64).tolist())}
        wins = []
        for left, right in spec[name]:
            lo = int(np.datetime64(left.replace(" ", "T"), "s").astype(np.int64))
            hi = int(np.datetime64(right.replace(" ", "T"), "s").astype(np.int64))
            wins.append((index[lo], index[hi]))
        files.append(NabFile(name, ts, raw[:, 1].astype(np.float64), wins))
    return files
