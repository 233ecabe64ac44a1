"""Per-signal state the anomaly engine does not keep: recent anomaly onsets and flat runs.

``RecentAnomalies`` holds a signal's flagged episodes within the hold window, so a spike
between two evaluations is not missed and its alert does not flap. ``FlatRuns`` learns each
signal's longest flat run, so "stuck" means flat for longer than that signal usually rests.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class RecentAnomalies:
    """Anomaly onsets of one signal within the hold window: (ts, score, reason)."""

    onsets: deque[tuple[int, float, int]] = field(default_factory=deque)

    def prune(self, oldest_ms: int) -> None:
        while self.onsets and self.onsets[0][0] < oldest_ms:
            self.onsets.popleft()

    def worst(self) -> tuple[float, int]:
        _ts, score, reason = max(self.onsets, key=lambda o: o[1])
        return score, reason


class FlatRuns:
    """Per signal, the longest flat run seen so far: a level that is often flat for an hour
    (a slow SKU, a scrap counter) is not stuck after 15 minutes; one that never rests is."""

    def __init__(self) -> None:
        self.longest = np.zeros(0, dtype=np.int64)
        self.since = np.zeros(0, dtype=np.int64)
        self.length = np.zeros(0, dtype=np.int64)
        self.first = np.zeros(0, dtype=np.int64)

    def update(self, now_ms: int, since: I64, seen: npt.NDArray[np.bool_]) -> I64:
        """Record runs that ended; return the current run lengths (0: not flat)."""
        n = since.size
        if self.since.size < n:
            grow = n - self.since.size
            self.longest = np.r_[self.longest, np.zeros(grow, np.int64)]
            self.since = np.r_[self.since, np.full(grow, -1, np.int64)]
            self.length = np.r_[self.length, np.zeros(grow, np.int64)]
            self.first = np.r_[self.first, np.full(grow, -1, np.int64)]
        self.first[(self.first < 0) & seen] = now_ms
        ended = (self.since >= 0) & (since != self.since)
        self.longest[ended] = np.maximum(self.longest[ended], self.length[ended])
        run = np.where(since >= 0, now_ms - since, 0)
        self.since, self.length = since.copy(), run
        return run
