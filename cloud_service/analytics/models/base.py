"""The model interface: what the depletion logic and the benches rely on."""

from __future__ import annotations

from typing import Protocol, Self

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class Forecaster(Protocol):
    """Fit on a history, fold in new observations, forecast ``h`` periods ahead."""

    def fit(self, y: npt.ArrayLike) -> Self: ...

    def update(self, y: npt.ArrayLike) -> Self:
        """Fold in observations that follow the fitted ones (same as refitting on all)."""
        ...

    def predict(self, h: int) -> F64: ...


def as_series(y: npt.ArrayLike) -> F64:
    """A 1-D float64 array of finite values, or ``ValueError``."""
    arr = np.ascontiguousarray(y, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("a series must be one-dimensional")
    if not np.isfinite(arr).all():
        raise ValueError("a series must not contain NaN or infinity")
    return arr


def check_h(h: int) -> int:
    if h < 1:
        raise ValueError("the horizon h must be at least 1")
    return h


def not_fitted(name: str) -> RuntimeError:
    return RuntimeError(f"{name}: call fit() first")
