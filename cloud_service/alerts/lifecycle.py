"""The ISA-18.2 alarm lifecycle as a pure state machine: conditions and commands in, events out.

No clock, no I/O: every call takes ``now_ms`` and returns the transitions it caused as
``AlertEvent`` records (who, when, why) for the store to persist and the router to deliver.
One ``Track`` per ``AlertKey`` (rule, site, subject) de-duplicates: a condition that stays true
never raises twice. States are active/cleared × unacknowledged/acknowledged; an occurrence
leaves the active set (``closed``) once it is both cleared and acknowledged (or cleared, when
its rule needs no acknowledgement). Against flapping: an on-delay before raising, an off-delay
before clearing, and deadbands (the rule evaluator reports ``hold_met`` with relaxed thresholds).

A track no rule evaluates any more (rule removed or disabled, subject out of scope) is ended
by :meth:`retire`, or it would keep its last condition, and keep reminding, for ever.

Timers (on/off delays, shelving expiry, re-notification, escalation) advance in :meth:`tick`;
:meth:`next_deadline_ms` says when the shell should call it next. Timers run on the caller's
clock; when it steps back, timers that started in its "future" restart from the new now
(a clock that ran ahead must not freeze the delays until it is caught up), while event times
and each record's ``updated_ms`` stay monotonic (the plant orders versions by it).

Flood suppression: while a gateway's ``gateway_offline`` condition holds (pending or active),
alerts of everything behind that gateway are suppressed (frozen, not notified) under the
gateway's alert.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cloud_service.alerts.errors import LifecycleError, UnknownAlertError
from cloud_service.alerts.records import (
    SYSTEM,
    AlertEvent,
    AlertKey,
    AlertRecord,
    ConditionState,
    EventKind,
    RuleType,
)
from cloud_service.alerts.settings import LifecycleSettings
from shared.messages import AlertState


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    renotify_every_ms: int | None = 3_600_000
    escalate_after_ms: tuple[int, ...] = (1_800_000,)
    max_shelve_ms: int = 8 * 3_600_000

    @classmethod
    def from_settings(cls, settings: LifecycleSettings) -> LifecyclePolicy:
        every = settings.renotify_every_s
        return cls(
            renotify_every_ms=None if every is None else int(every * 1000),
            escalate_after_ms=tuple(int(s * 1000) for s in settings.escalate_after_s),
            max_shelve_ms=int(settings.max_shelve_s * 1000),
        )


@dataclass(frozen=True, slots=True)
class SavedTrack:
    """What of a track survives a restart (open alert, shelving); conditions are re-observed."""

    key: AlertKey
    rule_type: RuleType
    gateway: str | None
    alert: AlertRecord | None
    shelved_until_ms: int | None
    last_notified_ms: int | None
    occurrence: int


@dataclass(slots=True)
class _Track:
    key: AlertKey
    rule_type: RuleType
    gateway: str | None = None
    latest: ConditionState | None = None  # None after a restart until observed again
    raise_met: bool = False
    hold_met: bool = False
    pending_since_ms: int | None = None  # the pending transition's condition holds since
    alert: AlertRecord | None = None
    occurrence: int = 0
    shelved_until_ms: int | None = None
    suppressed_by: str | None = None
    last_notified_ms: int | None = None

    @property
    def active(self) -> bool:
        return self.alert is not None and self.alert.state == AlertState.ACTIVE

    @property
    def delay_ms(self) -> int:
        if self.latest is None:
            return 0
        return self.latest.off_delay_ms if self.active else self.latest.on_delay_ms

    def wants_transition(self) -> bool:
        return (not self.hold_met) if self.active else self.raise_met


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A copy of a lifecycle's state (:meth:`Lifecycle.checkpoint`); tracks hold only values."""

    tracks: Mapping[AlertKey, _Track]
    by_id: Mapping[str, AlertKey]
    dirty: frozenset[AlertKey]
    now: int
    stamp: int
    serial: int


def alert_id(key: AlertKey, serial: int, now_ms: int) -> str:
    """A deterministic id per occurrence (so replays and tests agree)."""
    text = f"{key.text()}|{serial}|{now_ms}"
    return "al-" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


class Lifecycle:
    def __init__(self, policy: LifecyclePolicy, saved: Iterable[SavedTrack] = ()) -> None:
        self.policy = policy
        self._tracks: dict[AlertKey, _Track] = {}
        self._by_id: dict[str, AlertKey] = {}
        self._dirty: set[AlertKey] = set()
        self._now = 0  # the caller's clock at the last call (timers)
        self._stamp = 0  # the latest event time given out (event times never go backwards)
        self._serial = 0
        for s in saved:
            t = _Track(s.key, s.rule_type, s.gateway, alert=s.alert, occurrence=s.occurrence)
            t.shelved_until_ms = s.shelved_until_ms
            t.last_notified_ms = s.last_notified_ms
            t.suppressed_by = s.alert.suppressed_by if s.alert else None
            self._tracks[s.key] = t
            if s.alert is not None:
                self._by_id[s.alert.id] = s.key
                self._stamp = max(self._stamp, s.alert.updated_ms)
            self._now = max(self._now, self._stamp, s.last_notified_ms or 0)

    # -- queries -----------------------------------------------------------------------------

    def alert(self, alert_id: str) -> AlertRecord | None:
        key = self._by_id.get(alert_id)
        return None if key is None else self._tracks[key].alert

    def open_alerts(self) -> list[AlertRecord]:
        return [t.alert for t in self._tracks.values() if t.alert is not None]

    def suppressed_under(self, site: str, gateway: str) -> int:
        """How many open alerts the outage of this gateway currently suppresses."""
        return sum(
            1
            for t in self._tracks.values()
            if t.suppressed_by and t.alert and t.key.site == site and t.gateway == gateway
        )

    def saved(self) -> list[SavedTrack]:
        return [s for k in self._tracks if (s := self._saved(k)) is not None]

    def take_dirty(self) -> list[tuple[AlertKey, SavedTrack | None]]:
        """Tracks changed since the last call: the new saved form, or None to delete it."""
        out = [(k, self._saved(k)) for k in sorted(self._dirty)]
        self._dirty.clear()
        return out

    def next_deadline_ms(self) -> int | None:
        """The earliest time at which :meth:`tick` would do something, if any."""
        times: list[int] = []
        p = self.policy
        for t in self._tracks.values():
            if t.pending_since_ms is not None and not t.suppressed_by:
                times.append(t.pending_since_ms + t.delay_ms)
            if t.shelved_until_ms is not None:
                times.append(t.shelved_until_ms)
            a = t.alert
            if not (a and t.active and not a.acked and not t.suppressed_by) or t.shelved_until_ms:
                continue
            if a.escalation < len(p.escalate_after_ms):
                times.append(a.active_since_ms + p.escalate_after_ms[a.escalation])
            if p.renotify_every_ms is not None and t.last_notified_ms is not None:
                times.append(t.last_notified_ms + p.renotify_every_ms)
        return min(times) if times else None

    # -- inputs ------------------------------------------------------------------------------

    def observe(self, conditions: Iterable[ConditionState], now_ms: int) -> list[AlertEvent]:
        """Take the latest evaluation of some (rule, subject) pairs, then advance all timers.

        Pairs not mentioned keep their last known condition.
        """
        now = self._clock(now_ms)
        for c in conditions:
            t = self._tracks.get(c.key)
            if t is None:
                t = self._tracks[c.key] = _Track(c.key, c.rule_type)
            t.gateway, t.latest = c.gateway, c
            t.raise_met, t.hold_met = c.raise_met, c.hold_met or c.raise_met
            if not t.wants_transition():
                t.pending_since_ms = None
            elif t.pending_since_ms is None:
                t.pending_since_ms = now
        events = self._update_suppression(now)
        return events + self.tick(now)

    def tracked(self) -> set[tuple[RuleType, str, str]]:
        """(rule type, site, subject) of every track: an open alert, a pending or shelved
        condition. A shell that observes only subjects worth a look must keep observing
        these, or they would keep their last condition (and raise, or never clear)."""
        return {(t.rule_type, t.key.site, t.key.subject) for t in self._tracks.values()}

    def tracked_keys(self) -> dict[AlertKey, RuleType]:
        """The key and rule type of every track (for :func:`rules.orphaned`)."""
        return {k: t.rule_type for k, t in self._tracks.items()}

    def retire(self, reasons: Mapping[AlertKey, str], now_ms: int) -> list[AlertEvent]:
        """End the condition of tracks no rule evaluates any more (rule removed, renamed,
        disabled or retyped; subject out of the rule's scope), at once and whatever their
        delays or suppression, since nothing would ever observe them again.

        An active alert is cleared (actor ``system``, reason ``rules changed: ...``) and
        closes if it needs no acknowledgement; a cleared one awaits its acknowledgement as
        usual; a pending raise is dropped. Idempotent: a retired track yields no more events.
        """
        now = self._clock(now_ms)
        events: list[AlertEvent] = []
        for key, why in sorted(reasons.items()):
            t = self._tracks.get(key)
            if t is None:
                continue
            t.raise_met = t.hold_met = False
            t.pending_since_ms = None
            if t.active:
                assert t.alert is not None
                a = dataclasses.replace(t.alert, state=AlertState.CLEARED, updated_ms=now)
                event = AlertEvent(EventKind.CLEARED, now, SYSTEM, f"rules changed: {why}", a)
                events += self._commit(t, event)
        return events

    def tick(self, now_ms: int) -> list[AlertEvent]:
        now = self._clock(now_ms)
        events: list[AlertEvent] = []
        for t in list(self._tracks.values()):
            events += self._expire_shelving(t, now)
            events += self._advance(t, now)
            events += self._remind(t, now)
            if t.alert is None and t.shelved_until_ms is None and not t.raise_met:
                del self._tracks[t.key]
        return events

    def acknowledge(
        self,
        alert_id: str,
        *,
        actor: str,
        now_ms: int,
        at_ms: int | None = None,
        reason: str = "",
        activated_ms: int | None = None,
    ) -> list[AlertEvent]:
        """Acknowledge (idempotent). ``at_ms``: when the operator did it (e.g. at the plant);
        ``activated_ms``: the activation they saw, refused when the alert has since cleared
        and come back (an ack delayed past a reactivation must not silence it)."""
        now = self._clock(now_ms)
        t = self._track_of(alert_id, "acknowledge")
        a = t.alert
        assert a is not None
        if a.acked:
            return []
        if activated_ms is not None and a.activated_ms and activated_ms != a.activated_ms:
            raise LifecycleError(
                f"acknowledgement of an earlier activation of {alert_id}: it became active "
                "again since, and must be acknowledged again",
                alert_id=alert_id,
                action="acknowledge",
            )
        when = now if at_ms is None else min(max(at_ms, a.raised_ms), now)
        a = dataclasses.replace(a, acked=True, acked_by=actor, acked_ms=when, updated_ms=now)
        return self._commit(
            t, AlertEvent(EventKind.ACKED, when, actor, reason or "acknowledged", a)
        )

    def shelve(
        self, alert_id: str, *, until_ms: int, actor: str, now_ms: int, reason: str = ""
    ) -> list[AlertEvent]:
        now = self._clock(now_ms)
        t = self._track_of(alert_id, "shelve")
        if not now < until_ms <= now + self.policy.max_shelve_ms:
            raise LifecycleError(
                f"shelving must end within {self.policy.max_shelve_ms // 60_000} min from now",
                alert_id=alert_id,
                action="shelve",
            )
        t.shelved_until_ms = until_ms
        assert t.alert is not None
        a = dataclasses.replace(t.alert, shelved_until_ms=until_ms, updated_ms=now)
        return self._commit(t, AlertEvent(EventKind.SHELVED, now, actor, reason or "shelved", a))

    def unshelve(
        self, alert_id: str, *, actor: str, now_ms: int, reason: str = ""
    ) -> list[AlertEvent]:
        now = self._clock(now_ms)
        t = self._track_of(alert_id, "unshelve")
        if t.shelved_until_ms is None:
            return []
        events = self._unshelve(t, now, actor, reason or "unshelved")
        # an escalation that fell due while shelved happens now, not at the next tick
        return events + self._remind(t, now)

    def checkpoint(self) -> Checkpoint:
        """The whole state, for :meth:`rollback` (a shell undoing a command it could not store)."""
        tracks = {k: dataclasses.replace(t) for k, t in self._tracks.items()}
        dirty = frozenset(self._dirty)
        return Checkpoint(tracks, dict(self._by_id), dirty, self._now, self._stamp, self._serial)

    def rollback(self, cp: Checkpoint) -> None:
        """Back to the state of ``cp``, as if nothing had happened since."""
        self._tracks = {k: dataclasses.replace(t) for k, t in cp.tracks.items()}
        self._by_id, self._dirty = dict(cp.by_id), set(cp.dirty)
        self._now, self._stamp, self._serial = cp.now, cp.stamp, cp.serial

    # -- transitions -------------------------------------------------------------------------

    def _advance(self, t: _Track, now: int) -> list[AlertEvent]:
        if t.latest is None or t.suppressed_by:
            return []
        if not t.wants_transition():
            t.pending_since_ms = None
            return []
        if t.pending_since_ms is None:  # e.g. just unsuppressed: the delay starts now
            t.pending_since_ms = now
        held = now - t.pending_since_ms
        if held < t.delay_ms:
            return []
        t.pending_since_ms = None
        c = t.latest
        why = c.reason or c.title
        if held:
            why += f" (for {_duration(held)})"
        if t.active:
            assert t.alert is not None
            a = dataclasses.replace(self._fresh(t.alert, c), state=AlertState.CLEARED)
            a = dataclasses.replace(a, updated_ms=now)
            why = f"condition ended: {why}"
            return self._commit(t, AlertEvent(EventKind.CLEARED, now, SYSTEM, why, a))
        t.last_notified_ms = now
        if t.alert is not None:  # cleared, unacknowledged: the same occurrence again
            a = dataclasses.replace(
                self._fresh(t.alert, c), state=AlertState.ACTIVE, updated_ms=now,
                active_since_ms=now, activated_ms=now, escalation=0,
            )  # fmt: skip
            return self._commit(t, AlertEvent(EventKind.REACTIVATED, now, SYSTEM, why, a))
        t.occurrence += 1
        self._serial += 1  # unique even if a closed track is collected and re-raised this ms
        a = AlertRecord(
            id=alert_id(t.key, self._serial, now), key=t.key, rule_type=t.rule_type,
            severity=c.severity, state=AlertState.ACTIVE, acked=False, title=c.title,
            message=c.message, action=c.action, figures=dict(c.figures), raised_ms=now,
            updated_ms=now, active_since_ms=now, gateway=c.gateway, ack_required=c.ack_required,
            shelved_until_ms=t.shelved_until_ms, activated_ms=now,
        )  # fmt: skip
        return self._commit(t, AlertEvent(EventKind.RAISED, now, SYSTEM, why, a))

    def _remind(self, t: _Track, now: int) -> list[AlertEvent]:
        a, p = t.alert, self.policy
        if a is None or not t.active or a.acked or t.shelved_until_ms or t.suppressed_by:
            return []
        if a.escalation < len(p.escalate_after_ms):
            due = p.escalate_after_ms[a.escalation]
            if now - a.active_since_ms >= due:
                t.last_notified_ms = now
                level = a.escalation + 1
                a = dataclasses.replace(self._fresh(a, t.latest), escalation=level, updated_ms=now)
                why = f"unacknowledged for {_duration(now - a.active_since_ms)}: level {level}"
                return self._commit(t, AlertEvent(EventKind.ESCALATED, now, SYSTEM, why, a))
        last = t.last_notified_ms
        every = p.renotify_every_ms
        if every is None or last is None or now - last < every:
            return []
        t.last_notified_ms = now
        a = self._fresh(a, t.latest)
        why = f"still active and unacknowledged after {_duration(now - a.raised_ms)}"
        return self._commit(t, AlertEvent(EventKind.RENOTIFIED, now, SYSTEM, why, a))

    def _expire_shelving(self, t: _Track, now: int) -> list[AlertEvent]:
        if t.shelved_until_ms is None or now < t.shelved_until_ms:
            return []
        if t.alert is None:
            t.shelved_until_ms = None
            self._dirty.add(t.key)
            return []
        return self._unshelve(t, now, SYSTEM, "shelving expired")

    def _unshelve(self, t: _Track, now: int, actor: str, reason: str) -> list[AlertEvent]:
        t.shelved_until_ms = None
        t.last_notified_ms = now  # unshelving an active alert announces it again
        assert t.alert is not None
        a = dataclasses.replace(t.alert, shelved_until_ms=None, updated_ms=now)
        return self._commit(t, AlertEvent(EventKind.UNSHELVED, now, actor, reason, a))

    def _update_suppression(self, now: int) -> list[AlertEvent]:
        stale: dict[tuple[str, str], _Track] = {}
        unknown: set[tuple[str, str]] = set()  # restored, not observed since: keep as is
        for t in self._tracks.values():
            if t.rule_type == RuleType.GATEWAY_OFFLINE and t.gateway:
                where = (t.key.site, t.gateway)
                if t.latest is None:
                    unknown.add(where)
                elif t.raise_met or (t.active and t.hold_met):
                    stale[where] = t
        events: list[AlertEvent] = []
        for t in self._tracks.values():
            if t.rule_type == RuleType.GATEWAY_OFFLINE or not t.gateway:
                continue
            parent_key = (t.key.site, t.gateway)
            parent = stale.get(parent_key)
            if parent is not None and not t.suppressed_by:
                label = parent.alert.id if parent.alert else f"gateway:{t.gateway}"
                events += self._suppress(t, now, label)
            elif parent is None and t.suppressed_by and parent_key not in unknown:
                events += self._suppress(t, now, None)
        return events

    def _suppress(self, t: _Track, now: int, label: str | None) -> list[AlertEvent]:
        t.suppressed_by, t.pending_since_ms = label, None
        if t.alert is None:
            return []
        a = dataclasses.replace(t.alert, suppressed_by=label, updated_ms=now)
        where = f"gateway {t.gateway} at {t.key.site}"
        if label is None:  # reminders and escalation count from now, not from before the outage
            t.last_notified_ms = now
            a = dataclasses.replace(a, active_since_ms=now) if t.active else a
            return self._commit(
                t, AlertEvent(EventKind.UNSUPPRESSED, now, SYSTEM, f"{where} is back", a)
            )
        why = f"{where} is offline ({label})"
        return self._commit(t, AlertEvent(EventKind.SUPPRESSED, now, SYSTEM, why, a))

    # -- helpers -----------------------------------------------------------------------------

    def _commit(self, t: _Track, event: AlertEvent) -> list[AlertEvent]:
        """Make ``event.alert`` the track's record (or close it) and return the events.

        Event times (but an acknowledgement's, which says when the operator did it) and the
        record's ``updated_ms`` never go backwards, whatever the caller's clock did.
        """
        a = event.alert
        if event.kind != EventKind.ACKED and event.at_ms < self._stamp:
            event = dataclasses.replace(event, at_ms=self._stamp)
        if t.alert is not None and a.updated_ms < t.alert.updated_ms:
            a = dataclasses.replace(a, updated_ms=t.alert.updated_ms)
        if a.updated_ms < self._stamp:
            a = dataclasses.replace(a, updated_ms=self._stamp)
        if a is not event.alert:
            event = dataclasses.replace(event, alert=a)
        self._stamp = max(self._stamp, event.at_ms, a.updated_ms)
        events = [event]
        if event.kind in (EventKind.CLEARED, EventKind.ACKED) and not a.open:
            closed = AlertEvent(
                EventKind.CLOSED, event.at_ms, event.actor, "cleared and acknowledged", a
            )
            events.append(closed)
            self._by_id.pop(a.id, None)
            t.alert = None
        else:
            t.alert = a
            self._by_id[a.id] = t.key
        self._dirty.add(t.key)
        return events

    @staticmethod
    def _fresh(a: AlertRecord, c: ConditionState | None) -> AlertRecord:
        """The record with the latest words and figures (state untouched)."""
        if c is None:
            return a
        return dataclasses.replace(
            a, title=c.title, message=c.message, action=c.action, figures=dict(c.figures)
        )

    def _track_of(self, alert_id: str, action: str) -> _Track:
        key = self._by_id.get(alert_id)
        if key is None:
            raise UnknownAlertError(f"no open alert {alert_id!r}", alert_id=alert_id, action=action)
        return self._tracks[key]

    def _saved(self, key: AlertKey) -> SavedTrack | None:
        t = self._tracks.get(key)
        if t is None or (t.alert is None and t.shelved_until_ms is None):
            return None
        return SavedTrack(
            t.key, t.rule_type, t.gateway, t.alert, t.shelved_until_ms, t.last_notified_ms,
            t.occurrence,
        )  # fmt: skip

    def _clock(self, now_ms: int) -> int:
        """Take the caller's time. A step back restarts the timers that started after it."""
        if now_ms < self._now:
            for t in self._tracks.values():
                if t.pending_since_ms is not None and t.pending_since_ms > now_ms:
                    t.pending_since_ms = now_ms
                if t.last_notified_ms is not None and t.last_notified_ms > now_ms:
                    t.last_notified_ms = now_ms
                    self._dirty.add(t.key)
                if t.alert is not None and t.alert.active_since_ms > now_ms:
                    t.alert = dataclasses.replace(t.alert, active_since_ms=now_ms)
                    self._dirty.add(t.key)
        self._now = now_ms
        return now_ms


def _duration(ms: int) -> str:
    minutes = ms / 60_000
    if minutes < 1:
        return f"{ms / 1000:.0f} s"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"
