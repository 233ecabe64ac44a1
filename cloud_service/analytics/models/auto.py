"""AutoDemand: classify the history (ADI / CV²) and forecast with the model of its class."""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import numpy.typing as npt

from cloud_service.analytics.codes import DemandClass, Model
from cloud_service.analytics.kernels import auto as ka
from cloud_service.analytics.kernels import intermittent as ki
from cloud_service.analytics.models.base import F64, as_series, check_h, not_fitted


class AutoDemand:
    """The service's demand model (policy in :mod:`cloud_service.analytics.kernels.auto`).

    After ``fit``: ``demand_class``, ``model``, ``rate`` and ``trend`` (per period) and ``mse``
    (squared error of one period's demand, for the spread of cumulative demand).
    """

    def __init__(self) -> None:
        self.history_: F64 = np.empty(0)
        self.demand_class = DemandClass.NONE
        self.model = Model.ZERO
        self.rate = math.nan
        self.trend = 0.0
        self.mse = 0.0
        self.adi = math.inf
        self.cv2 = 0.0

    def fit(self, y: npt.ArrayLike) -> Self:
        x = as_series(y)
        if (x < 0).any():
            raise ValueError("demand must be non-negative")
        self.history_ = x.copy()
        cls, model, rate, trend, mse = ka.auto_forecast(x)
        _, adi, cv2 = ki.classify(x)
        self.demand_class = DemandClass(int(cls))
        self.model = Model(int(model))
        self.rate, self.trend, self.mse = float(rate), float(trend), float(mse)
        self.adi, self.cv2 = float(adi), float(cv2)
        return self

    def update(self, y: npt.ArrayLike) -> Self:
        """Refit on the kept history plus ``y`` (the class may change as demand does)."""
        return self.fit(np.concatenate([self.history_, as_series(y)]))

    def predict(self, h: int) -> F64:
        if math.isnan(self.rate):
            raise not_fitted("AutoDemand")
        steps = np.arange(check_h(h), dtype=np.float64)
        return np.maximum(self.rate + self.trend * steps, 0.0)
