"""Croston, SBA, TSB and ADIDA for intermittent demand (non-negative, many zero periods).

With the defaults (alpha 0.1) Croston and SBA equal statsforecast's ``CrostonClassic`` and
``CrostonSBA``, and TSB equals ``TSB(alpha_d, alpha_p)``: the oracle tests hold us to 1e-9.
``update`` folds new periods into the smoothed state, as refitting on the whole history would.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import numpy.typing as npt

from cloud_service.analytics.kernels import intermittent as ki
from cloud_service.analytics.models.base import F64, as_series, check_h, not_fitted


class Croston:
    """Croston's method: SES of demand sizes over SES of inter-demand intervals."""

    debiased = False

    def __init__(self, alpha: float = 0.1):
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.size_ = math.nan
        self.interval_ = math.nan
        self.since_ = 0.0  # periods since the last demand
        self.last_ = math.nan  # last observation (the forecast while no demand was seen)
        self.fitted_ = False

    def fit(self, y: npt.ArrayLike) -> Self:
        self.size_, self.interval_, self.since_, self.last_ = math.nan, math.nan, 0.0, math.nan
        self.fitted_ = False
        return self.update(y)

    def update(self, y: npt.ArrayLike) -> Self:
        a = self.alpha
        z, p, q = self.size_, self.interval_, self.since_
        x = as_series(y)
        for v in x:
            q += 1.0
            if v != 0.0:
                if math.isnan(z):
                    z, p = float(v), q
                else:
                    z = a * float(v) + (1.0 - a) * z
                    p = a * q + (1.0 - a) * p
                q = 0.0
        if x.size:
            self.last_ = float(x[-1])
            self.fitted_ = True
        self.size_, self.interval_, self.since_ = z, p, q
        return self

    def rate(self) -> float:
        if not self.fitted_:
            raise not_fitted(type(self).__name__)
        if math.isnan(self.size_):
            return self.last_
        f = self.size_ / self.interval_ if self.interval_ != 0.0 else self.size_
        return f * (1.0 - self.alpha / 2.0) if self.debiased else f

    def predict(self, h: int) -> F64:
        return np.full(check_h(h), self.rate())


class SBA(Croston):
    """Syntetos-Boylan approximation: Croston times ``1 - alpha/2`` (removes its upward bias)."""

    debiased = True


class TSB:
    """Teunter-Syntetos-Babai: SES of P(demand) every period times SES of demand sizes.

    Unlike Croston it lowers the forecast in every period without demand, so it follows an
    item going obsolete.
    """

    def __init__(self, alpha_d: float = 0.1, alpha_p: float = 0.1):
        for a in (alpha_d, alpha_p):
            if not 0.0 < a <= 1.0:
                raise ValueError("alpha_d and alpha_p must be in (0, 1]")
        self.alpha_d = alpha_d
        self.alpha_p = alpha_p
        self.prob_ = math.nan
        self.size_ = math.nan

    def fit(self, y: npt.ArrayLike) -> Self:
        self.prob_, self.size_ = math.nan, math.nan
        return self.update(y)

    def update(self, y: npt.ArrayLike) -> Self:
        p, z = self.prob_, self.size_
        for v in as_series(y):
            ind = 1.0 if v != 0.0 else 0.0
            p = ind if math.isnan(p) else self.alpha_p * ind + (1.0 - self.alpha_p) * p
            if v > 0.0:
                z = float(v) if math.isnan(z) else self.alpha_d * float(v) + (1 - self.alpha_d) * z
        self.prob_, self.size_ = p, z
        return self

    def predict(self, h: int) -> F64:
        if math.isnan(self.prob_):
            raise not_fitted("TSB")
        rate = 0.0 if math.isnan(self.size_) else self.prob_ * self.size_
        return np.full(check_h(h), rate)


class ADIDA:
    """Aggregate to the mean inter-demand interval, SES (alpha in [0.1, 0.3]), disaggregate.

    Aggregation needs the history, so ``update`` refits on the kept history.
    """

    def __init__(self) -> None:
        self.history_: F64 = np.empty(0)
        self.rate_ = math.nan

    def fit(self, y: npt.ArrayLike) -> Self:
        self.history_ = as_series(y).copy()
        if self.history_.size == 0:
            raise ValueError("ADIDA needs at least one observation")
        self.rate_ = float(ki.adida(self.history_))
        return self

    def update(self, y: npt.ArrayLike) -> Self:
        return self.fit(np.concatenate([self.history_, as_series(y)]))

    def predict(self, h: int) -> F64:
        if math.isnan(self.rate_):
            raise not_fitted("ADIDA")
        return np.full(check_h(h), self.rate_)
