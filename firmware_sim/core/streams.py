"""Named, independent random streams derived from one seed.

Every entity (a SKU's demand, a line's failures, a sensor's noise) draws from its own stream,
keyed by its name rather than by creation order: adding a SKU to a scenario does not change the
numbers of the others, and reading a sensor more often never changes the demand. numpy's
``SeedSequence``/``Generator`` streams are stable across platforms and numpy versions.
"""

from __future__ import annotations

import hashlib

import numpy as np

_BLOCK = 1024


def _key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


def stream(seed: int, *names: str) -> np.random.Generator:
    """The generator for ``names`` (e.g. ``("demand", "W2", "A-113")``) under ``seed``."""
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=tuple(_key(n) for n in names))
    return np.random.default_rng(sequence)


class NormalDraws:
    """Standard normal draws taken in blocks: one numpy call per 1024 values, not per value."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: list[float] = []
        self._i = 0

    def next(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self._rng.standard_normal(_BLOCK).tolist()
            self._i = 0
        value = self._buf[self._i]
        self._i += 1
        return value


class UniformDraws:
    """Uniform [0, 1) draws taken in blocks, like :class:`NormalDraws`."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: list[float] = []
        self._i = 0

    def next(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self._rng.random(_BLOCK).tolist()
            self._i = 0
        value = self._buf[self._i]
        self._i += 1
        return value
