"""Models: classification cut-offs, incremental updates, Holt's trend, input checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cloud_service.analytics.codes import DemandClass, Model
from cloud_service.analytics.kernels import auto as ka
from cloud_service.analytics.kernels import intermittent as ki
from cloud_service.analytics.kernels import smoothing as ks
from cloud_service.analytics.models import ADIDA, SBA, SES, TSB, AutoDemand, Croston, Holt

demand = arrays(
    np.float64,
    st.integers(1, 60),
    elements=st.one_of(st.just(0.0), st.floats(0.5, 1000.0)),
)


@settings(max_examples=50, deadline=None)
@given(demand, st.integers(0, 59))
def test_update_equals_refit(y: np.ndarray, cut: int) -> None:
    cut = min(cut, y.size - 1)
    for make in (lambda: SES(alpha=0.3), Croston, SBA, lambda: TSB(0.2, 0.1), ADIDA):
        whole = make().fit(y).predict(1)
        split = make().fit(y[: cut + 1]).update(y[cut + 1 :]).predict(1)
        np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(demand)
def test_forecasts_are_finite_non_negative_and_within_range(y: np.ndarray) -> None:
    for model in (SES(alpha=0.2), Croston(), SBA(), TSB(), ADIDA(), AutoDemand()):
        f = model.fit(y).predict(4)
        assert f.shape == (4,)
        assert np.isfinite(f).all()
        assert (f >= 0).all()
        assert f.max() <= y.max() + 1e-9


def test_syntetos_boylan_classes() -> None:
    smooth = np.full(40, 10.0) + np.tile([0.0, 1.0], 20)
    erratic = np.tile([1.0, 30.0], 20)
    intermittent = np.tile([0.0, 0.0, 5.0, 0.0, 6.0], 8)
    lumpy = np.tile([0.0, 0.0, 1.0, 0.0, 40.0], 8)
    assert ki.classify(smooth)[0] == DemandClass.SMOOTH
    assert ki.classify(erratic)[0] == DemandClass.ERRATIC
    assert ki.classify(intermittent)[0] == DemandClass.INTERMITTENT
    assert ki.classify(lumpy)[0] == DemandClass.LUMPY
    assert ki.classify(np.zeros(10))[0] == DemandClass.NONE
    # the cut-offs themselves: ADI exactly 1.32 is intermittent, just under is smooth
    y = np.zeros(132)
    y[:100] = 5.0
    assert ki.classify(y)[1] == pytest.approx(1.32)
    assert ki.classify(y)[0] == DemandClass.INTERMITTENT


def test_auto_picks_the_model_of_the_class() -> None:
    rng = np.random.default_rng(0)
    smooth = 20.0 + rng.normal(0, 1, 60)
    assert AutoDemand().fit(smooth).model == Model.SES
    trend = np.arange(60, dtype=np.float64) * 2.0 + rng.normal(0, 0.5, 60) + 10.0
    auto = AutoDemand().fit(trend)
    assert auto.model == Model.HOLT
    assert auto.trend == pytest.approx(2.0, rel=0.1)
    sparse = np.tile([0.0, 0.0, 0.0, 4.0], 15)
    fitted = AutoDemand().fit(sparse)
    assert fitted.model == Model.IMAPA
    # 0.75 × IMAPA-SBA + 0.25 × TSB, both with constants chosen against the next 12 periods
    imapa = ki.imapa_flat(sparse, ka.IMAPA_GRID, ka.FLAT_H, True)
    tsb = ki.tsb_flat(sparse, ka.TSB_GRID, ka.FLAT_H)
    assert fitted.rate == pytest.approx(0.75 * imapa + 0.25 * tsb)
    # a regular pattern with a true rate of 1: the finer levels lean towards the phase the
    # history ends in, both ways alike, so each phase is near 1; the SBA shrinkage (alpha/2 of
    # each level, at most 15 %) puts their mean a little under 1, never over
    rates = [AutoDemand().fit(np.roll(sparse, k)).rate for k in range(4)]
    assert all(abs(r - 1.0) < 0.3 for r in rates)
    assert 0.85 < np.mean(rates) < 1.0
    assert AutoDemand().fit(np.zeros(20)).predict(3).tolist() == [0.0, 0.0, 0.0]


def test_imapa_flat_sba_shrinks_each_level_by_its_own_alpha() -> None:
    # brute force: levels 1..round(mean interval), each SES level of the bucket sums (ending
    # at the last period) times 1 - alpha/2, per period, averaged over the levels
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = np.where(rng.random(48) < 0.3, rng.integers(1, 20, 48), 0).astype(np.float64)
        y[rng.integers(0, 48)] = 5.0
        top = max(round(ki.mean_interval(y)), 1)
        acc = 0.0
        for k in range(1, top + 1):
            sums = y[y.size % k :].reshape(-1, k).sum(axis=1)
            lvl, alpha = ks.ses_flat_alpha(sums, ka.IMAPA_GRID, -(-12 // k))
            acc += (1.0 - alpha / 2.0) * lvl / k
        got = ki.imapa_flat(y, ka.IMAPA_GRID, 12, True)
        assert got == pytest.approx(acc / top, rel=1e-12)
        assert got < ki.imapa_flat(y, ka.IMAPA_GRID, 12)


def test_flat_alpha_scores_the_level_against_the_next_h_values() -> None:
    # a step: the level after t should match the mean of the next h values; brute force
    y = np.r_[np.full(20, 10.0), np.full(20, 2.0)]
    grid = ka.IMAPA_GRID
    lvl, alpha = ks.ses_flat_alpha(y, grid, 6)

    def score(a: float) -> float:
        f = y[0]
        s = 0.0
        for t in range(y.size - 1):
            f = a * y[t] + (1 - a) * f
            s += (f - y[t + 1 : t + 7].mean()) ** 2
        return s

    best = min(grid, key=score)
    assert alpha == best
    assert lvl == pytest.approx(ks.ses_level(y, best))
    assert ks.ses_flat_alpha(np.array([3.0, 5.0]), grid, 6) == (4.0, grid[0])


def test_flat_intermittent_models_follow_demand_that_dies_out() -> None:
    # demand every other period, then none for the last 12: the flat-h choice of TSB's
    # constants lowers the forecast well under the old rate; IMAPA drops too
    y = np.r_[np.tile([0.0, 6.0], 15), np.zeros(12)]
    old_rate = 3.0
    assert ki.tsb_flat(y, ka.TSB_GRID, 12) < 0.2 * old_rate
    assert ki.imapa_flat(y, ka.IMAPA_GRID, 12) < 0.6 * old_rate
    assert ki.tsb_flat(np.zeros(5), ka.TSB_GRID, 12) == 0.0
    assert ki.imapa_flat(np.zeros(5), ka.IMAPA_GRID, 12) == 0.0
    assert AutoDemand().fit(y).rate < 0.6 * old_rate


def test_tsb_flat_grids_is_tsb_flat_with_separate_grids() -> None:
    y = np.r_[np.tile([0.0, 6.0], 15), np.zeros(12)]
    g = ka.TSB_GRID
    assert ki.tsb_flat_grids(y, g, g, 12) == ki.tsb_flat(y, g, 12)
    # one point per grid is plain TSB with those constants
    one_d, one_p = np.array([0.1]), np.array([0.3])
    assert ki.tsb_flat_grids(y, one_d, one_p, 12) == pytest.approx(ki.tsb(y, 0.1, 0.3))
    assert ki.tsb_flat_grids(np.zeros(0), g, g, 12) == 0.0


def test_holt_follows_a_line() -> None:
    y = 5.0 + 3.0 * np.arange(30)
    np.testing.assert_allclose(Holt(0.5, 0.3).fit(y).predict(3), [95.0, 98.0, 101.0])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        SES(0.1).fit([1.0, np.nan])
    with pytest.raises(ValueError, match="alpha"):
        SES(alpha=1.5)
    with pytest.raises(ValueError, match="non-negative"):
        AutoDemand().fit([1.0, -2.0])
    with pytest.raises(RuntimeError, match="fit"):
        Croston().predict(1)
    with pytest.raises(ValueError, match="horizon"):
        SES(0.1).fit([1.0]).predict(0)
