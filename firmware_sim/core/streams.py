"""Named, independent random streams derived from one seed.

Every entity (a SKU's demand, a line's failures, a sensor's noise) draws from its own stream,
keyed by its name rather than by creation order: adding a SKU to a scenario does not change the
numbers of the others, and reading a sensor more often never changes the demand. numpy's
``SeedSequence``/``Generator`` streams are stable across platforms and numpy versions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

_BLOCK = 1024


def _key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


def stream(seed: int, *names: str) -> np.random.Generator:
    """The generator for ``names`` (e.g. ``("demand", "W2", "A-113")``) under ``seed``."""
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=tuple(_key(n) for n in names))
    return np.random.default_rng(sequence)


class _BlockDraws:
    """Draws taken in blocks: one numpy call per 1024 values, not per value."""

    def __init__(self, draw_block: Callable[[int], np.ndarray]) -> None:
        self._draw_block = draw_block
        self._buf: list[float] = []
        self._i = 0

    def next(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self._draw_block(_BLOCK).tolist()
            self._i = 0
        value = self._buf[self._i]
        self._i += 1
        return value


class NormalDraws(_BlockDraws):
    """Standard normal draws, taken in blocks."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng.standard_normal)


class UniformDraws(_BlockDraws):
    """Uniform [0, 1) draws, taken in blocks."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng.random)
