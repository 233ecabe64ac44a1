"""The simulated clock: speed, catching up with the wall clock, and the manual clock."""

from __future__ import annotations

import pytest

from firmware_sim.clock import ManualClock, SimClock
from firmware_sim.errors import PlantParameterError


class Fake:
    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


def test_speed_scales_monotonic_time() -> None:
    mono = Fake(100.0)
    clock = SimClock(1_000_000, speed=10_080, monotonic=mono)
    assert clock.now_ms() == 1_000_000
    mono.value += 60.0  # a real minute ...
    assert clock.now_ms() == 1_000_000 + 7 * 86_400_000  # ... is a simulated week
    assert clock.speed == 10_080


def test_cap_at_wall_catches_up_then_runs_in_real_time() -> None:
    mono = Fake(0.0)
    wall = 1_800_000_000_000
    clock = SimClock(
        wall - 3_600_000, speed=60, cap_at_wall=True, monotonic=mono, wall=lambda: wall
    )
    mono.value = 30.0  # 30 min simulated: still in the past
    assert clock.now_ms() == wall - 1_800_000
    mono.value = 61.0  # 61 min simulated: it met the wall clock (at 61.02 s) just now
    assert clock.now_ms() == wall + 60_000
    mono.value = 62.0  # from here on real time: 62 s after the wall clock's start
    assert clock.now_ms() == wall + 62_000
    mono.value = 120.0
    assert clock.now_ms() == wall + 120_000


def test_default_start_is_now_and_speed_must_be_positive() -> None:
    clock = SimClock(wall=lambda: 1_234_000)
    assert clock.start_ms == 1_234_000
    with pytest.raises(PlantParameterError):
        SimClock(speed=0)
    with pytest.raises(PlantParameterError):
        SimClock(speed=float("inf"))


def test_manual_clock_never_goes_back() -> None:
    clock = ManualClock(5_000)
    assert clock.advance(1_000) == 6_000
    clock.set(9_000)
    assert clock.now_ms() == 9_000
    with pytest.raises(PlantParameterError):
        clock.set(8_999)
    with pytest.raises(PlantParameterError):
        clock.advance(-1)
