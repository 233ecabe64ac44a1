"""The one simulated clock that every server, device and the world read.

Simulated time is ``start + speed x (monotonic time since the clock was made)``: 1.0 is real
time, 10080 a week per minute. It uses the monotonic clock, so a wall-clock step (NTP) never
makes simulated time jump. With ``cap_at_wall`` an accelerated run that starts in the past
catches up with the wall clock and then continues in real time, so its timestamps never run
into the future (the cloud refuses readings more than five minutes ahead of its own clock).

:class:`ManualClock` is for tests and tools: time moves only when told to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from firmware_sim.errors import PlantParameterError


class Clock(Protocol):
    start_ms: int  # simulated time when the clock was made

    @property
    def speed(self) -> float: ...

    def now_ms(self) -> int: ...


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SimClock:
    def __init__(
        self,
        start_ms: int | None = None,
        *,
        speed: float = 1.0,
        cap_at_wall: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], int] = wall_ms,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise PlantParameterError("speed", speed, "must be a finite number > 0")
        self._speed = speed
        self._monotonic = monotonic
        self._wall = wall
        self._origin = monotonic()
        self._wall_origin = wall()
        self.start_ms = self._wall_origin if start_ms is None else start_ms
        self.cap_at_wall = cap_at_wall

    @property
    def speed(self) -> float:
        return self._speed

    def now_ms(self) -> int:
        elapsed = self._monotonic() - self._origin
        now = self.start_ms + math.floor(elapsed * 1000 * self._speed)
        if self.cap_at_wall:
            now = min(now, max(self.start_ms, self._wall_origin + math.floor(elapsed * 1000)))
        return now


class ManualClock:
    """Time stands still until :meth:`advance` or :meth:`set` moves it (never backwards)."""

    def __init__(self, start_ms: int) -> None:
        self._now = start_ms
        self.start_ms = start_ms

    @property
    def speed(self) -> float:
        return 0.0

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        if ms < 0:
            raise PlantParameterError("ms", ms, "time does not go backwards")
        self._now += ms
        return self._now

    def set(self, t_ms: int) -> None:
        if t_ms < self._now:
            raise PlantParameterError("t_ms", t_ms, "time does not go backwards")
        self._now = t_ms
