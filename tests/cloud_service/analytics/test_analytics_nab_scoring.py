"""NAB scoring rules: weights, probation, first detection per window, sweep, normalisation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_service.analytics.evaluation import nab

STD = nab.PROFILES["standard"]
DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "nab"


def test_sigmoid_and_probation() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(3.0) == -1.0
    assert nab.probation_length(4032) == 604
    assert nab.probation_length(22695) == 750


def test_layout_weights() -> None:
    lay = nab.layout(1000, [(800, 899)], STD)
    assert lay.weight[800] == pytest.approx(1.0)  # left edge scores the full TP weight
    assert lay.weight[899] == pytest.approx(nab.scaled_sigmoid(-1 / 100) / nab.scaled_sigmoid(-1.0))
    assert lay.weight[700] == pytest.approx(-0.11)  # before any window: full FP weight
    assert lay.weight[900] == pytest.approx(0.11 * nab.scaled_sigmoid(1 / 99))
    assert (lay.window[:150] == nab.PROBATION).all()
    assert (lay.window[800:900] == 0).all()
    assert lay.window[900] == nab.OUTSIDE


def test_file_score_counts_first_detection_and_fps() -> None:
    lay = nab.layout(1000, [(800, 899)], STD)
    det = np.zeros(1000, dtype=bool)
    assert nab.score_file(det, lay, STD).score == -1.0  # missed window
    det[[100, 500, 850, 860]] = True  # 100 is probation, 500 an FP, two TPs
    s = nab.score_file(det, lay, STD)
    assert (s.tp, s.fn, s.fp) == (1, 0, 1)
    assert s.score == pytest.approx(lay.weight[850] - 0.11)


def test_normalise() -> None:
    assert nab.normalise(-10.0, 10, STD) == 0.0
    assert nab.normalise(10.0, 10, STD) == 100.0
    assert nab.normalise(0.0, 10, STD) == 50.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=300, max_size=300), st.integers(160, 250))
def test_sweep_agrees_with_brute_force(scores: list[float], left: int) -> None:
    s = np.round(np.array(scores), 2)
    lay = nab.layout(300, [(left, left + 30)], STD)
    thr, best = nab.sweep([s], [lay], STD)
    brute = max([nab.score_file(s >= t, lay, STD).score for t in np.unique(s)] + [-STD.fn])
    assert best == pytest.approx(brute)
    if math.isfinite(thr):
        assert nab.score_file(s >= thr, lay, STD).score == pytest.approx(best)


@pytest.mark.skipif(not DATA.exists(), reason=f"NAB data not found at {DATA}")
def test_corpus_loads_with_its_windows() -> None:
    files = nab.load_corpus(DATA)
    assert len(files) == 18
    assert sum(len(f.windows) for f in files) == 25
    taxi = next(f for f in files if f.name.endswith("nyc_taxi.csv"))
    assert taxi.windows[0] == (5839, 6045)
