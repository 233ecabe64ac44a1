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
    (a slow SKU, a scrap counter) is not stuck after 15 minutes; one that never rests is.

    A run reported as stuck is a fault, not the signal's habit: it is not learned (else each
    fault would make the next one slower to see). After a restart the runs and the first
    reading are learned again from the history the engine is rebuilt from
    (:meth:`learn_history`), so the warm-up does not start over.
    """

    def __init__(self) -> None:
        self.longest = np.zeros(0, dtype=np.int64)
        self.since = np.zeros(0, dtype=np.int64)
        self.length = np.zeros(0, dtype=np.int64)
        self.first = np.zeros(0, dtype=np.int64)
        self.flagged = np.zeros(0, dtype=bool)  # the current run was reported stuck

    def _grow(self, n: int) -> None:
        if self.since.size >= n:
            return
        grow = n - self.since.size
        self.longest = np.r_[self.longest, np.zeros(grow, np.int64)]
        self.since = np.r_[self.since, np.full(grow, -1, np.int64)]
        self.length = np.r_[self.length, np.zeros(grow, np.int64)]
        self.first = np.r_[self.first, np.full(grow, -1, np.int64)]
        self.flagged = np.r_[self.flagged, np.zeros(grow, bool)]

    def update(self, now_ms: int, since: I64, seen: npt.NDArray[np.bool_]) -> I64:
        """Record runs that ended; return the current run lengths (0: not flat)."""
        self._grow(since.size)
        self.first[(self.first < 0) & seen] = now_ms
        ended = (self.since >= 0) & (since != self.since)
        learn = ended & ~self.flagged
        self.longest[learn] = np.maximum(self.longest[learn], self.length[learn])
        self.flagged[ended] = False
        run = np.where(since >= 0, now_ms - since, 0)
        self.since, self.length = since.copy(), run
        return run

    def restore(self, sid: int, longest_ms: int, first_ms: int) -> None:
        """A baseline saved before a restart (what :meth:`learn_history` then adds to)."""
        self._grow(sid + 1)
        self.longest[sid] = max(int(self.longest[sid]), longest_ms)
        if first_ms >= 0 and (self.first[sid] < 0 or first_ms < self.first[sid]):
            self.first[sid] = first_ms

    def flag(self, stuck: npt.NDArray[np.bool_]) -> None:
        """These signals' current runs were reported stuck."""
        self._grow(stuck.size)
        self.flagged[: stuck.size] |= stuck

    def learn_history(
        self,
        series: I64,
        ts_ms: I64,
        values: npt.NDArray[np.float64],
        *,
        min_repeats: int,
        warmup_ms: int,
        factor: float,
    ) -> None:
        """Learn first readings and flat runs from stored history, as live evaluation would
        have: a run of at least ``min_repeats`` repeated values that ended is learned unless
        it would have been reported (longer than ``factor`` × the longest before it, after
        the warm-up)."""
        ok = np.isfinite(values)
        s, t, v = series[ok], ts_ms[ok], values[ok]
        if s.size == 0:
            return
        self._grow(int(s.max()) + 1)
        order = np.lexsort((t, s))
        s, t, v = s[order], t[order], v[order]
        new_series = np.r_[True, s[1:] != s[:-1]]
        for sid, t0 in zip(s[new_series].tolist(), t[new_series].tolist(), strict=True):
            if self.first[sid] < 0 or t0 < self.first[sid]:
                self.first[sid] = t0
        starts = np.flatnonzero(new_series | np.r_[True, v[1:] != v[:-1]])
        ends = np.r_[starts[1:], s.size]  # first index of the next run
        closed = (ends < s.size) & (s[np.minimum(ends, s.size - 1)] == s[starts])
        runs = (ends - starts - 1 >= min_repeats) & closed
        for i, j in zip(starts[runs].tolist(), ends[runs].tolist(), strict=True):
            sid = int(s[i])
            duration = int(t[j] - t[i])
            reported = t[j] - self.first[sid] >= warmup_ms and duration > factor * self.longest[sid]
            if not reported:
                self.longest[sid] = max(int(self.longest[sid]), duration)
