"""SES and Holt: exponential smoothing for smooth demand and for level signals."""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import numpy.typing as npt

from cloud_service.analytics.kernels import smoothing as ks
from cloud_service.analytics.models.base import F64, as_series, check_h, not_fitted


class SES:
    """Simple exponential smoothing; ``alpha=None`` chooses it by golden-section search.

    With a fixed alpha the forecast equals statsforecast's ``SimpleExponentialSmoothing``.
    """

    def __init__(self, alpha: float | None = None, bounds: tuple[float, float] = (0.02, 0.5)):
        if alpha is not None and not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.bounds = bounds
        self.alpha_: float = math.nan
        self.level_: float = math.nan

    def fit(self, y: npt.ArrayLike) -> Self:
        x = as_series(y)
        if x.size == 0:
            raise ValueError("SES needs at least one observation")
        a = self.alpha
        if a is None:
            a = float(ks.ses_optimal_alpha(x, self.bounds[0], self.bounds[1], 20))
        self.alpha_ = a
        self.level_ = float(ks.ses_level(x, a))
        return self

    def update(self, y: npt.ArrayLike) -> Self:
        if math.isnan(self.level_):
            return self.fit(y)
        a = self.alpha_
        lvl = self.level_
        for v in as_series(y):
            lvl = a * float(v) + (1.0 - a) * lvl
        self.level_ = lvl
        return self

    def predict(self, h: int) -> F64:
        if math.isnan(self.level_):
            raise not_fitted("SES")
        return np.full(check_h(h), self.level_)


class Holt:
    """Holt's linear trend; ``alpha``/``beta`` ``None`` picks them on a small grid by SSE."""

    def __init__(self, alpha: float | None = None, beta: float | None = None):
        self.alpha = alpha
        self.beta = beta
        self.alpha_ = math.nan
        self.beta_ = math.nan
        self.level_ = math.nan
        self.trend_ = 0.0

    def fit(self, y: npt.ArrayLike) -> Self:
        x = as_series(y)
        if x.size == 0:
            raise ValueError("Holt needs at least one observation")
        if self.alpha is None or self.beta is None:
            a, b, lvl, tr, _ = ks.holt_optimal(x, np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.8]))
        else:
            a, b = self.alpha, self.beta
            lvl, tr, _ = ks.holt_state(x, a, b)
        self.alpha_, self.beta_ = float(a), float(b)
        self.level_, self.trend_ = float(lvl), float(tr)
        return self

    def update(self, y: npt.ArrayLike) -> Self:
        if math.isnan(self.level_):
            return self.fit(y)
        a, b = self.alpha_, self.beta_
        lvl, tr = self.level_, self.trend_
        for v in as_series(y):
            new = a * float(v) + (1.0 - a) * (lvl + tr)
            tr = b * (new - lvl) + (1.0 - b) * tr
            lvl = new
        self.level_, self.trend_ = lvl, tr
        return self

    def predict(self, h: int) -> F64:
        if math.isnan(self.level_):
            raise not_fitted("Holt")
        return self.level_ + self.trend_ * np.arange(1, check_h(h) + 1, dtype=np.float64)
