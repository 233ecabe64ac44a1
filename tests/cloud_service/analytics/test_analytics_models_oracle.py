"""Correctness oracle: where our model is statsforecast's model, forecasts agree to 1e-9.

statsforecast definitions (2.x): SimpleExponentialSmoothing(alpha), CrostonClassic (alpha 0.1
on sizes and intervals), CrostonSBA (x0.95), TSB(alpha_d, alpha_p). Kept small: 40 series.
"""

from __future__ import annotations

import numpy as np
import pytest

sf_models = pytest.importorskip("statsforecast.models", reason="statsforecast is a dev dependency")

from cloud_service.analytics.models import SBA, SES, TSB, Croston  # noqa: E402

TOL = 1e-9


def _series() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    for k in range(40):
        n = int(rng.integers(2, 80))
        p = rng.uniform(0.05, 1.0)
        y = (rng.random(n) < p) * rng.gamma(2.0, 5.0, n)
        if k % 5 == 0:
            y[: n // 2] = 0.0  # late first demand
        if not y.any():
            y[-1] = 3.0
        out.append(y.astype(np.float64))
    return out


@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.9])
def test_ses_fixed_alpha(alpha: float) -> None:
    for y in _series():
        ours = SES(alpha=alpha).fit(y).predict(3)
        theirs = sf_models.SimpleExponentialSmoothing(alpha=alpha).forecast(y, 3)["mean"]
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)


def test_croston_classic_and_sba() -> None:
    for y in _series():
        np.testing.assert_allclose(
            Croston().fit(y).predict(2),
            sf_models.CrostonClassic().forecast(y, 2)["mean"],
            rtol=0,
            atol=TOL,
        )
        np.testing.assert_allclose(
            SBA().fit(y).predict(2),
            sf_models.CrostonSBA().forecast(y, 2)["mean"],
            rtol=0,
            atol=TOL,
        )


@pytest.mark.parametrize(("alpha_d", "alpha_p"), [(0.1, 0.1), (0.2, 0.05), (0.5, 0.3)])
def test_tsb_fixed(alpha_d: float, alpha_p: float) -> None:
    for y in _series():
        ours = TSB(alpha_d=alpha_d, alpha_p=alpha_p).fit(y).predict(2)
        theirs = sf_models.TSB(alpha_d=alpha_d, alpha_p=alpha_p).forecast(y, 2)["mean"]
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)
