"""The evaluation loop: figures to rules to the alert lifecycle, whenever something changed.

Woken at once by a fresh anomaly or a health event (a reading that crosses a threshold should
reach the plant in well under a second), and at least every ``evaluate_interval_s`` for
timers (stuck for N minutes, silence, on/off delays). Forecasts are refreshed on their own,
slower cadence. A failed step (metadata store down) is logged and retried on the next wake:
the lifecycle keeps the step's records and writes them first next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from cloud_service.alerts.errors import AlertError
from cloud_service.alerts.records import AlertEvent, RuleType
from cloud_service.alerts.rules import Rule
from cloud_service.alerts.service import AlertService
from cloud_service.errors import MetadataError
from cloud_service.ingest.health import HealthCore
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.storage.errors import StorageError

log = logging.getLogger(__name__)

_SIGNAL_RULES = frozenset({RuleType.SIGNAL_ANOMALY, RuleType.SENSOR_STUCK, RuleType.NO_DATA})


def wall_ms() -> int:
    return int(time.time() * 1000)


def silence_bounds(rules: Sequence[Rule]) -> list[tuple[float, float]]:
    """(ms, periods) pairs below which no rule can hold on a signal's silence.

    Only signals silent for at least both figures of one pair are passed to the rules (plus
    those the lifecycle already follows, which covers deadbands and pending on-delays). A
    lagging ingest makes every signal silent for seconds; this keeps that from putting the
    whole fleet through the rules when no rule cares before ten minutes.
    """
    out: list[tuple[float, float]] = []
    for rule in rules:
        if not rule.enabled or rule.type not in _SIGNAL_RULES:
            continue
        ms: list[float] = []
        periods: list[float] = []
        for c in rule.conditions():
            if c.metric not in ("silent_min", "silent_periods"):
                continue
            if c.op not in (">", ">="):
                return [(0.0, 0.0)]  # "silent for less than": every signal may hold
            bound = max(c.value - c.deadband, 0.0)
            if c.metric == "silent_min":
                ms.append(bound * 60_000.0)
            else:
                periods.append(bound)
        if rule.match == "all":
            if ms or periods:
                out.append((max(ms, default=0.0), max(periods, default=0.0)))
        else:
            out += [(m, 0.0) for m in ms] + [(0.0, p) for p in periods]
    return out


class Monitor:
    def __init__(
        self,
        live: LiveAnalytics,
        alerts: AlertService,
        rules: Sequence[Rule],
        *,
        health: HealthCore | None = None,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.live = live
        self.alerts = alerts
        self.rules = list(rules)
        self._silence = silence_bounds(self.rules)
        self.health = health
        self.clock = clock
        self.settings = live.settings
        self.evaluations = 0
        self.failures = 0
        self._next_refresh_ms = 0
        self._refreshing = False  # a refresh pass is spread over steps
        self._wake = asyncio.Event()
        #: Called (as a task) after each refresh of the forecasts: the write-back.
        self.after_refresh: Callable[[int], Coroutine[Any, Any, None]] | None = None
        self._after: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Evaluate as soon as possible (safe to call from the event loop only)."""
        self._wake.set()

    def force_refresh(self) -> None:
        """Recompute forecasts and plan figures at the next step (the plan changed)."""
        self._next_refresh_ms = 0
        self.wake()

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Evaluate ``rules`` from the next step on; that step also clears the alerts of
        rules removed, renamed or disabled, and of subjects now outside their rule's scope
        (``AlertService.evaluate``)."""
        self.rules = list(rules)
        self._silence = silence_bounds(self.rules)
        self.wake()

    async def step(self, now_ms: int | None = None) -> list[AlertEvent]:
        """Refresh what is due, evaluate every rule, advance the lifecycle's timers."""
        now = self.clock() if now_ms is None else now_ms
        if self._refreshing or now >= self._next_refresh_ms:
            done = self.live.refresh(now, self.settings.refresh_budget_ms)
            self._refreshing = not done
        if not self._refreshing and now >= self._next_refresh_ms:
            self._next_refresh_ms = now + int(self.settings.forecast_interval_s * 1000)
            if self.after_refresh is not None and (
                self._after is None or self._after.done()
            ):  # in the background: evaluation must not wait for a write
                self._after = asyncio.create_task(self.after_refresh(now))
        tracked = {
            (site, subject)
            for rule_type, site, subject in self.alerts.lifecycle.tracked()
            if rule_type in _SIGNAL_RULES
        }
        health = self.health
        inputs = self.live.inputs(
            now, health.gateways() if health is not None else (), tracked, self._silence
        )
        self.evaluations += 1
        return await self.alerts.evaluate(self.rules, inputs)

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.settings.evaluate_interval_s
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.step()
            except (AlertError, MetadataError, StorageError, SQLAlchemyError, OSError) as exc:
                self.failures += 1
                log.warning("alert evaluation failed (%s); retrying", exc)
            except Exception:  # a bug: the loop must outlive it, or every alert stops
                self.failures += 1
                self.live.abandon_pass()
                log.exception("alert evaluation failed unexpectedly; retrying")
            waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            # let a burst of wakes coalesce into one evaluation
            await asyncio.sleep(0.005)
