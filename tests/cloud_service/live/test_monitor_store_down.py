"""The evaluation loop outlives an alert store that is down (``MetadataUnavailable``).

The analytics and the alert service are stand-ins: what is under test is the loop's handling
of the store's error, which the real store raises (tests/cloud_service/alerts/
test_alerts_store_down.py shows it with a real fault).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from cloud_service.alerts.inputs import ConditionInputs
from cloud_service.alerts.records import AlertEvent
from cloud_service.alerts.rules import Rule
from cloud_service.alerts.service import AlertService
from cloud_service.errors import MetadataUnavailable
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.monitor import Monitor
from cloud_service.live.settings import LiveSettings


class FakeLive:
    settings = LiveSettings(evaluate_interval_s=0.01)
    abandoned = 0

    def abandon_pass(self) -> None:
        self.abandoned += 1

    def refresh(self, now_ms: int, budget_ms: float | None) -> bool:
        return True

    def inputs(self, now_ms: int, *args: Any) -> ConditionInputs:
        return ConditionInputs(now_ms)


class DownThenUp:
    """``evaluate`` fails twice as the store does while the database is down."""

    def __init__(self) -> None:
        self.calls = 0
        self.lifecycle = self
        self.recovered = asyncio.Event()

    def tracked(self) -> set[tuple[Any, str, str]]:
        return set()

    async def evaluate(self, rules: Sequence[Rule], inputs: ConditionInputs) -> list[AlertEvent]:
        self.calls += 1
        if self.calls <= 2:
            raise MetadataUnavailable("db down", operation="alert record", backend="sqlite")
        self.recovered.set()
        return []


async def test_the_loop_retries_while_the_alert_store_is_unavailable() -> None:
    service = DownThenUp()
    live = cast(LiveAnalytics, FakeLive())
    monitor = Monitor(live, cast(AlertService, service), [], clock=lambda: 1_790_000_000_000)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        await asyncio.wait_for(service.recovered.wait(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert monitor.failures == 2
    assert service.calls >= 3


class BugOnce(DownThenUp):
    """``evaluate`` raises what no handler names (a bug in a rule or a figure), once."""

    async def evaluate(self, rules: Sequence[Rule], inputs: ConditionInputs) -> list[AlertEvent]:
        self.calls += 1
        if self.calls == 1:
            raise ValueError("quantities must not be negative")
        self.recovered.set()
        return []


async def test_the_loop_outlives_an_unexpected_error() -> None:
    service = BugOnce()
    fake = FakeLive()
    monitor = Monitor(
        cast(LiveAnalytics, fake), cast(AlertService, service), [], clock=lambda: 1_790_000_000_000
    )
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        await asyncio.wait_for(service.recovered.wait(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert monitor.failures == 1
    assert fake.abandoned == 1  # the half-done forecast pass starts again
