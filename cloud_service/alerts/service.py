"""The alert service: the one shell around the pure lifecycle, serialising every change.

Each step (conditions observed, a timer, an operator command) runs the lifecycle, routes its
events to notifications and records events, lifecycle state and notifications in one
transaction; only then are the events published on the live stream and the dispatcher woken.
If the store is down (``MetadataUnavailable``), the step's records are kept in memory and
written first by the next step (the error is raised so callers such as the MQTT ack handler
withhold their PUBACK); an operator's command (ack, shelve, unshelve) is undone instead, so
what the API shows is what is stored. Alerts of rules that left the rule set are retired by
:meth:`AlertService.evaluate`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from cloud_service.alerts.errors import LifecycleError
from cloud_service.alerts.inputs import ConditionInputs
from cloud_service.alerts.lifecycle import Lifecycle, LifecyclePolicy, SavedTrack
from cloud_service.alerts.outbox import Notification
from cloud_service.alerts.records import AlertEvent, AlertKey, AlertRecord, ConditionState
from cloud_service.alerts.routing import Router
from cloud_service.alerts.rules import Rule, evaluate, orphaned
from cloud_service.alerts.store import StoredEvent
from shared.messages import Alert, AlertAck


class AlertLog(Protocol):
    """What the service needs from persistence (``store.SqlAlertStore``)."""

    async def record(
        self,
        events: Sequence[AlertEvent],
        tracks: Sequence[tuple[AlertKey, SavedTrack | None]],
        notifications: Sequence[Notification],
    ) -> list[int]: ...

    async def load_tracks(self) -> list[SavedTrack]: ...


class EventPublisher(Protocol):
    def publish(self, event: StoredEvent) -> None: ...


class AlertService:
    def __init__(
        self,
        lifecycle: Lifecycle,
        log: AlertLog,
        router: Router,
        *,
        stream: EventPublisher | None = None,
        on_enqueue: Callable[[], None] | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.log = log
        self.router = router
        self.stream = stream
        self.on_enqueue = on_enqueue
        self._lock = asyncio.Lock()
        self._events: list[AlertEvent] = []  # recorded by no transaction yet
        self._tracks: dict[AlertKey, SavedTrack | None] = {}
        self._notes: list[Notification] = []

    @classmethod
    async def open(
        cls,
        log: AlertLog,
        router: Router,
        *,
        stream: EventPublisher | None = None,
        on_enqueue: Callable[[], None] | None = None,
    ) -> AlertService:
        """Restore the lifecycle from the store (open alerts, shelving)."""
        policy = LifecyclePolicy.from_settings(router.settings.lifecycle)
        lifecycle = Lifecycle(policy, await log.load_tracks())
        return cls(lifecycle, log, router, stream=stream, on_enqueue=on_enqueue)

    async def evaluate(self, rules: Sequence[Rule], inputs: ConditionInputs) -> list[AlertEvent]:
        """Observe ``rules`` (the whole rule set) on ``inputs``. Tracks the set no longer
        evaluates (rule removed, renamed, disabled; subject out of scope) are retired first,
        or they would keep their last condition for ever."""
        states = evaluate(rules, inputs)
        now_ms = inputs.now_ms

        def change() -> list[AlertEvent]:
            keys = {s.key for s in states}
            gone = orphaned(rules, inputs, self.lifecycle.tracked_keys(), keys)
            return self.lifecycle.retire(gone, now_ms) + self.lifecycle.observe(states, now_ms)

        return await self._step(change, now_ms)

    async def observe(self, states: Sequence[ConditionState], now_ms: int) -> list[AlertEvent]:
        return await self._step(lambda: self.lifecycle.observe(states, now_ms), now_ms)

    async def tick(self, now_ms: int) -> list[AlertEvent]:
        return await self._step(lambda: self.lifecycle.tick(now_ms), now_ms)

    async def acknowledge(
        self,
        alert_id: str,
        *,
        actor: str,
        now_ms: int,
        at_ms: int | None = None,
        reason: str = "",
        activated_ms: int | None = None,
    ) -> list[AlertEvent]:
        def ack() -> list[AlertEvent]:
            return self.lifecycle.acknowledge(
                alert_id, actor=actor, now_ms=now_ms, at_ms=at_ms, reason=reason,
                activated_ms=activated_ms,
            )  # fmt: skip

        return await self._step(ack, now_ms, command=True)

    async def acknowledge_from_plant(
        self, ack: AlertAck, *, site: str, gateway: str, now_ms: int
    ) -> list[AlertEvent]:
        """An ``alert-acks`` message: a gateway may acknowledge only its own site's alerts."""
        alert = self.lifecycle.alert(ack.alert)
        if alert is not None and (alert.key.site != site or alert.gateway != gateway):
            raise LifecycleError(
                f"gateway {site}/{gateway} may not acknowledge alert {ack.alert} of "
                f"{alert.key.site}/{alert.gateway}",
                alert_id=ack.alert,
                action="acknowledge",
            )
        reason = f"acknowledged at the plant (gateway {gateway})"
        if ack.comment:
            reason += f": {ack.comment}"
        actor = f"{ack.operator}@{gateway}"
        return await self.acknowledge(
            ack.alert, actor=actor, now_ms=now_ms, at_ms=ack.ts, reason=reason,
            activated_ms=ack.activated,
        )  # fmt: skip

    async def shelve(
        self, alert_id: str, *, until_ms: int, actor: str, now_ms: int, reason: str = ""
    ) -> list[AlertEvent]:
        def shelve() -> list[AlertEvent]:
            return self.lifecycle.shelve(
                alert_id, until_ms=until_ms, actor=actor, now_ms=now_ms, reason=reason
            )

        return await self._step(shelve, now_ms, command=True)

    async def unshelve(
        self, alert_id: str, *, actor: str, now_ms: int, reason: str = ""
    ) -> list[AlertEvent]:
        def unshelve() -> list[AlertEvent]:
            return self.lifecycle.unshelve(alert_id, actor=actor, now_ms=now_ms, reason=reason)

        return await self._step(unshelve, now_ms, command=True)

    def open_alerts(self) -> list[AlertRecord]:
        return self.lifecycle.open_alerts()

    def plant_alerts(
        self, gateway: tuple[str, str] | None = None
    ) -> dict[tuple[str, str], list[Alert]]:
        """The open alerts the plant must hold, per ``(site, gateway)`` (only ``gateway``'s if
        given), in their current wire state: what ``MqttAlertLink`` republishes when the broker
        has lost it. Shelved ones are left out: an occurrence raised while shelved is not shown
        until it is unshelved, and the record does not say whether it was shown before."""
        out: dict[tuple[str, str], list[Alert]] = {}
        for a in self.lifecycle.open_alerts():
            if a.gateway is None or a.shelved_until_ms is not None:
                continue
            key = (a.key.site, a.gateway)
            if gateway is None or key == gateway:
                out.setdefault(key, []).append(a.to_wire())
        return out

    def next_deadline_ms(self) -> int | None:
        return self.lifecycle.next_deadline_ms()

    async def _step(
        self, change: Callable[[], list[AlertEvent]], now_ms: int, *, command: bool = False
    ) -> list[AlertEvent]:
        """Run ``change`` and record it with whatever earlier steps could not record.

        If the write fails, an operator's ``command`` is undone (the lifecycle is rolled back;
        the caller sees the error and may try again); the lifecycle's own transitions are
        kept in memory and written first by the next step.
        """
        async with self._lock:
            checkpoint = self.lifecycle.checkpoint() if command else None
            events = change()
            recorded = self._events + events
            tracks = {**self._tracks, **dict(self.lifecycle.take_dirty())}
            pending = self._notes + self.router.route(events, now_ms)
            if not (recorded or tracks or pending):
                return events
            try:
                ids = await self.log.record(recorded, list(tracks.items()), pending)
            except Exception:
                if checkpoint is not None:  # as if not given; earlier records stay pending
                    self.lifecycle.rollback(checkpoint)
                else:
                    self._events, self._tracks, self._notes = recorded, tracks, pending
                raise
            except BaseException:  # cancelled mid-write, maybe stored: write it (again) next
                self._events, self._tracks, self._notes = recorded, tracks, pending
                raise
            self._events, self._tracks, self._notes = [], {}, []
            notes = bool(pending)
        if self.stream is not None:
            for event_id, e in zip(ids, recorded, strict=True):
                self.stream.publish(StoredEvent(event_id, e.type, e.alert.key.site, e.body()))
        if notes and self.on_enqueue is not None:
            self.on_enqueue()
        return events
