"""Short, bounded histories per series: hourly stock levels and minute counter totals.

The anomaly engine needs no history (its state is a few numbers per series), but forecasts
and plan figures do: a stock level per hour for the depletion forecast and for consumption
against the demand plan, and a production counter per minute for attainment against a shift.
Each is a fixed-size ring of buckets holding the last reading of the bucket, so memory is
bounded whatever the sampling rate. Late readings (older than the newest bucket) are ignored:
replayed history cannot rewrite a bucket already used.

Timestamps: a bucket holds the level or total as the bucket ended, so once a later bucket has
begun it is stamped with its end (its last millisecond, still inside it: an hour is keyed by
``ts // HOUR_MS`` everywhere); the newest bucket, still filling, keeps its reading's own time,
so the reading just in counts in a window that ends now. Not the older readings' own times:
InfluxQL's ``GROUP BY time()`` does not return them, and a trail rebuilt from InfluxDB at
start-up (``history``) must give the same figures as one built live from the same readings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


@dataclass(slots=True)
class BucketTrail:
    """The last value of each ``bucket_ms`` bucket, for the last ``size`` buckets."""

    bucket_ms: int
    size: int
    _slot: I64 = field(init=False)  # bucket number held by each ring slot (-1: empty)
    _ts: I64 = field(init=False)  # time of the reading held (which is the bucket's latest)
    _value: F64 = field(init=False)
    newest: int = -1  # newest bucket number

    def __post_init__(self) -> None:
        self._slot = np.full(self.size, -1, dtype=np.int64)
        self._ts = np.zeros(self.size, dtype=np.int64)
        self._value = np.full(self.size, np.nan)

    def add(self, ts_ms: int, value: float) -> bool:
        """Keep ``value`` as its bucket's latest; False when too late to count."""
        b = ts_ms // self.bucket_ms
        if b < self.newest:
            return False
        i = b % self.size
        if b != self._slot[i] or ts_ms >= self._ts[i]:
            self._slot[i] = b
            self._ts[i] = ts_ms
            self._value[i] = value
        self.newest = max(self.newest, int(b))
        return True

    def series(self, since_ms: int | None = None) -> tuple[I64, F64]:
        """(timestamps, values) of the buckets held, oldest first, from ``since_ms`` on; a
        bucket's timestamp is its end, the newest's its reading's (see the module's doc)."""
        lo = self.newest - self.size + 1
        keep = (self._slot >= lo) & (self._slot >= 0)
        stamps = np.where(
            self._slot == self.newest, self._ts, (self._slot + 1) * self.bucket_ms - 1
        )
        if since_ms is not None:
            keep &= stamps >= since_ms
        order = np.argsort(self._slot[keep], kind="stable")
        return stamps[keep][order], self._value[keep][order]

    def latest(self) -> tuple[int, float] | None:
        if self.newest < 0:
            return None
        i = self.newest % self.size
        return int(self._ts[i]), float(self._value[i])


class CounterTrail(BucketTrail):
    """Minute totals for attainment, and hourly ones (as long as stock is kept) for netting
    production out of a stock level's consumption."""

    def __init__(self, bucket_ms: int, size: int, hourly: BucketTrail) -> None:
        super().__init__(bucket_ms, size)
        self.hourly = hourly

    def add(self, ts_ms: int, value: float) -> bool:
        self.hourly.add(ts_ms, value)
        return super().add(ts_ms, value)

    def add_minute(self, ts_ms: int, value: float) -> bool:
        """Into the minute buckets only (the start-up rebuild reads the hours on their own,
        over the longer stock history)."""
        return super().add(ts_ms, value)


def hourly_decrease(ts_ms: I64, level: F64, made: F64 | None = None) -> tuple[I64, F64]:
    """Consumption per hour from hourly levels, for sums over windows: the fall between
    consecutive hours plus what a line made into the stock meanwhile (``made``: its
    cumulative output at each level's time). Where the level rose beyond known output (a
    receipt) the hour counts 0: an underestimate stated in docs/live.md.

    Output reaches the stock in lots, after it is counted: the hour that counts a lot the
    stock has not seen yet overstates consumption, the hour the lot lands understates it. So
    an hour may be negative by as much as the output counted in it and the two hours before
    (what can still have been on its way in); a sum over hours is then right once the lots
    have landed. A rise beyond that is a receipt: that hour counts 0, as without a line.
    """
    if ts_ms.size < 2:
        return ts_ms[:0], level[:0]
    fall = level[:-1] - level[1:]
    if made is None:
        return ts_ms[1:], np.maximum(fall, 0.0)
    inc = np.diff(made)
    used = fall + inc
    in_transit = np.convolve(inc, np.ones(3))[: inc.size]  # this hour's and the two before
    # a rise beyond what can have been on its way in is a receipt: the hour counts 0
    return ts_ms[1:], np.where(used < -in_transit, 0.0, used)
