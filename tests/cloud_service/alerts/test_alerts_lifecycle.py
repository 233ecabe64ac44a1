"""The ISA-18.2 lifecycle as a pure state machine: examples first, then a stateful property."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cloud_service.alerts.errors import LifecycleError, UnknownAlertError
from cloud_service.alerts.lifecycle import Lifecycle, LifecyclePolicy, SavedTrack
from cloud_service.alerts.records import (
    AlertEvent,
    AlertKey,
    ConditionState,
    EventKind,
    RuleType,
)
from shared.messages import AlertState, Severity

T0 = 1_790_000_000_000
MIN = 60_000
KEY = AlertKey("stuck", "s1", "lc7")
GW_KEY = AlertKey("gw-off", "s1", "gw-1")
POLICY = LifecyclePolicy(renotify_every_ms=60 * MIN, escalate_after_ms=(30 * MIN,))
K = EventKind


def cond(
    raise_met: bool,
    hold_met: bool | None = None,
    *,
    key: AlertKey = KEY,
    on: int = 0,
    off: int = 0,
    ack_required: bool = True,
    gateway: str | None = "gw-1",
) -> ConditionState:
    return ConditionState(
        key=key, rule_type=RuleType.SENSOR_STUCK, raise_met=raise_met,
        hold_met=raise_met if hold_met is None else hold_met, severity=Severity.WARNING,
        title=f"{key.subject} stuck", figures={"stuck_min": 20.0}, reason="stuck_min = 20",
        gateway=gateway, on_delay_ms=on, off_delay_ms=off, ack_required=ack_required,
    )  # fmt: skip


def gateway_offline(offline: bool, on: int = 0) -> ConditionState:
    return ConditionState(
        key=GW_KEY, rule_type=RuleType.GATEWAY_OFFLINE, raise_met=offline, hold_met=offline,
        severity=Severity.CRITICAL, title="Gateway gw-1 offline", gateway="gw-1", on_delay_ms=on,
    )  # fmt: skip


def kinds(events: list[AlertEvent]) -> list[EventKind]:
    return [e.kind for e in events]


def test_raise_ack_clear_records_who_when_and_why() -> None:
    lc = Lifecycle(POLICY)
    raised = lc.observe([cond(True)], T0)
    assert kinds(raised) == [K.RAISED]
    alert = raised[0].alert
    assert (alert.state, alert.acked, raised[0].actor) == (AlertState.ACTIVE, False, "system")
    assert raised[0].reason == "stuck_min = 20"
    assert raised[0].at_ms == T0
    acked = lc.acknowledge(alert.id, actor="ana", now_ms=T0 + MIN, reason="on it")
    assert kinds(acked) == [K.ACKED]
    assert (acked[0].actor, acked[0].reason, acked[0].alert.acked_by) == ("ana", "on it", "ana")
    cleared = lc.observe([cond(False)], T0 + 2 * MIN)
    assert kinds(cleared) == [K.CLEARED, K.CLOSED]
    assert cleared[0].reason.startswith("condition ended")
    assert lc.open_alerts() == []
    assert lc.alert(alert.id) is None


def test_cleared_unacked_stays_open_and_comes_back_as_the_same_occurrence() -> None:
    lc = Lifecycle(POLICY)
    alert_id = lc.observe([cond(True)], T0)[0].alert.id
    assert kinds(lc.observe([cond(False)], T0 + MIN)) == [K.CLEARED]
    (still,) = lc.open_alerts()
    assert (still.id, still.state, still.acked) == (alert_id, AlertState.CLEARED, False)
    again = lc.observe([cond(True)], T0 + 2 * MIN)
    assert kinds(again) == [K.REACTIVATED]
    assert again[0].alert.id == alert_id
    lc.observe([cond(False)], T0 + 3 * MIN)
    assert kinds(lc.acknowledge(alert_id, actor="ana", now_ms=T0 + 4 * MIN)) == [K.ACKED, K.CLOSED]


def test_a_condition_that_stays_true_raises_once() -> None:
    lc = Lifecycle(POLICY)
    events = [e for i in range(10) for e in lc.observe([cond(True)], T0 + i * 1000)]
    assert kinds(events) == [K.RAISED]


def test_on_delay_raises_only_after_the_condition_held_long_enough() -> None:
    lc = Lifecycle(POLICY)
    assert lc.observe([cond(True, on=10 * MIN)], T0) == []
    assert lc.next_deadline_ms() == T0 + 10 * MIN
    assert lc.tick(T0 + 10 * MIN - 1) == []
    assert kinds(lc.tick(T0 + 10 * MIN)) == [K.RAISED]


def test_an_interrupted_condition_restarts_the_on_delay() -> None:
    lc = Lifecycle(POLICY)
    lc.observe([cond(True, on=10 * MIN)], T0)
    lc.observe([cond(False, on=10 * MIN)], T0 + 5 * MIN)
    lc.observe([cond(True, on=10 * MIN)], T0 + 6 * MIN)
    assert lc.tick(T0 + 15 * MIN) == []
    assert kinds(lc.tick(T0 + 16 * MIN)) == [K.RAISED]


def test_deadband_and_off_delay_keep_a_flapping_alert_active() -> None:
    lc = Lifecycle(POLICY)
    lc.observe([cond(True, off=5 * MIN)], T0)
    # Back under the threshold but inside the deadband: still active.
    assert lc.observe([cond(False, True, off=5 * MIN)], T0 + MIN) == []
    # Out of the deadband, but not for the whole off-delay: still active.
    assert lc.observe([cond(False, False, off=5 * MIN)], T0 + 2 * MIN) == []
    assert lc.observe([cond(True, off=5 * MIN)], T0 + 4 * MIN) == []
    assert lc.observe([cond(False, False, off=5 * MIN)], T0 + 5 * MIN) == []
    assert lc.tick(T0 + 10 * MIN - 1) == []
    assert kinds(lc.tick(T0 + 10 * MIN)) == [K.CLEARED]


def test_alerts_that_need_no_ack_close_when_cleared() -> None:
    lc = Lifecycle(POLICY)
    lc.observe([cond(True, ack_required=False)], T0)
    assert kinds(lc.observe([cond(False, ack_required=False)], T0 + MIN)) == [K.CLEARED, K.CLOSED]


def test_escalation_then_renotification_while_unacknowledged() -> None:
    lc = Lifecycle(POLICY)
    lc.observe([cond(True)], T0)
    assert lc.next_deadline_ms() == T0 + 30 * MIN
    esc = lc.tick(T0 + 30 * MIN)
    assert kinds(esc) == [K.ESCALATED]
    assert esc[0].alert.escalation == 1
    assert lc.tick(T0 + 90 * MIN - 1) == []
    assert kinds(lc.tick(T0 + 90 * MIN)) == [K.RENOTIFIED]
    lc.acknowledge(esc[0].alert.id, actor="ana", now_ms=T0 + 91 * MIN)
    assert lc.tick(T0 + 1000 * MIN) == []


def test_shelving_mutes_reminders_and_expires() -> None:
    lc = Lifecycle(POLICY)
    alert_id = lc.observe([cond(True)], T0)[0].alert.id
    shelved = lc.shelve(alert_id, until_ms=T0 + 120 * MIN, actor="ana", now_ms=T0, reason="maint")
    assert kinds(shelved) == [K.SHELVED]
    assert shelved[0].alert.shelved_until_ms == T0 + 120 * MIN
    assert lc.tick(T0 + 119 * MIN) == []  # no escalation, no reminder while shelved
    expired = lc.tick(T0 + 120 * MIN)
    assert kinds(expired)[0] == K.UNSHELVED
    assert expired[0].actor == "system"
    assert expired[0].reason == "shelving expired"


def test_shelving_is_time_limited_and_needs_an_open_alert() -> None:
    lc = Lifecycle(POLICY)
    alert_id = lc.observe([cond(True)], T0)[0].alert.id
    with pytest.raises(LifecycleError):
        lc.shelve(alert_id, until_ms=T0 + 9 * 60 * MIN, actor="ana", now_ms=T0)
    with pytest.raises(UnknownAlertError):
        lc.shelve("al-nope", until_ms=T0 + MIN, actor="ana", now_ms=T0)
    with pytest.raises(UnknownAlertError):
        lc.acknowledge("al-nope", actor="ana", now_ms=T0)


def test_a_stale_gateway_suppresses_its_children_under_one_alert() -> None:
    lc = Lifecycle(POLICY)
    child = lc.observe([cond(True)], T0)[0].alert
    other = AlertKey("stuck", "s1", "lc8")
    events = lc.observe([gateway_offline(True), cond(True, key=other)], T0 + MIN)
    assert kinds(events) == [K.SUPPRESSED, K.RAISED]
    assert events[0].alert.id == child.id
    assert events[1].alert.key == GW_KEY
    assert lc.suppressed_under("s1", "gw-1") == 1
    # Suppressed: no reminders for the child, no new alert for the other signal.
    late = lc.tick(T0 + 100 * MIN)
    assert {e.alert.key for e in late} == {GW_KEY}
    back = lc.observe([gateway_offline(False), cond(True, key=other, on=MIN)], T0 + 101 * MIN)
    assert kinds(back) == [K.UNSUPPRESSED, K.CLEARED]
    # The other signal's on-delay starts when the suppression ends.
    assert kinds(lc.tick(T0 + 102 * MIN)) == [K.RAISED]


def test_children_are_suppressed_while_the_gateway_alert_is_still_pending() -> None:
    lc = Lifecycle(POLICY)
    events = lc.observe([gateway_offline(True, on=5 * MIN), cond(True)], T0)
    assert events == []  # neither the child (suppressed) nor the gateway (on-delay) yet
    assert kinds(lc.tick(T0 + 5 * MIN)) == [K.RAISED]


def test_state_survives_a_restart_and_waits_for_fresh_conditions() -> None:
    lc = Lifecycle(POLICY)
    alert_id = lc.observe([cond(True)], T0)[0].alert.id
    dirty = lc.take_dirty()
    assert [k for k, _ in dirty] == [KEY]
    wire = msgspec.json.encode([s for _, s in dirty])
    restored = Lifecycle(POLICY, msgspec.json.decode(wire, type=list[SavedTrack]))
    assert restored.tick(T0 + MIN) == []  # no condition known yet: neither cleared nor raised
    assert restored.observe([cond(True)], T0 + 2 * MIN) == []  # the same occurrence, no duplicate
    assert kinds(restored.acknowledge(alert_id, actor="ana", now_ms=T0 + 3 * MIN)) == [K.ACKED]


def test_an_escalation_due_while_shelved_happens_at_unshelve() -> None:
    """Found by the stateful property below: unshelving left an escalation that fell due
    while shelved for the next tick (a deadline already past after an operation)."""
    lc = Lifecycle(POLICY)
    alert_id = lc.observe([cond(True)], T0)[0].alert.id
    lc.shelve(alert_id, until_ms=T0 + 60 * MIN, actor="op", now_ms=T0 + MIN)
    assert lc.tick(T0 + 40 * MIN) == []  # shelved: no escalation at 30 min
    events = lc.unshelve(alert_id, actor="op", now_ms=T0 + 40 * MIN)
    assert kinds(events) == [K.UNSHELVED, K.ESCALATED]
    deadline = lc.next_deadline_ms()
    assert deadline is None or deadline > T0 + 40 * MIN


def test_closed_tracks_are_deleted_from_the_saved_state() -> None:
    lc = Lifecycle(POLICY)
    lc.observe([cond(True, ack_required=False)], T0)
    lc.take_dirty()
    lc.observe([cond(False, ack_required=False)], T0 + MIN)
    assert lc.take_dirty() == [(KEY, None)]
    assert lc.saved() == []


def test_event_times_never_go_backwards() -> None:
    lc = Lifecycle(POLICY)
    lc.observe([cond(True)], T0)
    events = lc.observe([cond(False)], T0 - 5 * MIN)
    assert [e.at_ms for e in events] == [T0]


def test_a_clock_that_ran_ahead_does_not_freeze_the_delays() -> None:
    # the server clock was two hours ahead for one evaluation, then corrected: a 10-minute
    # on-delay counts from the corrected clock, not from when it catches up two hours later
    lc = Lifecycle(POLICY)
    assert lc.observe([cond(True, on=10 * MIN)], T0 + 120 * MIN) == []  # pending, clock ahead
    assert lc.observe([cond(True, on=10 * MIN)], T0) == []
    assert lc.observe([cond(True, on=10 * MIN)], T0 + 9 * MIN) == []
    (ev,) = lc.observe([cond(True, on=10 * MIN)], T0 + 10 * MIN)
    assert ev.kind == K.RAISED
    assert ev.at_ms == T0 + 10 * MIN
    assert lc.next_deadline_ms() == T0 + 40 * MIN  # escalation, 30 min after the raise


def test_after_a_clock_step_back_versions_still_go_forward() -> None:
    # an alert raised while the clock was ahead: its later versions never carry an earlier
    # updated time (the plant keeps the newest by it), and reminders count from the new now
    lc = Lifecycle(POLICY)
    (raised,) = lc.observe([cond(True)], T0 + 120 * MIN)
    events = lc.observe([cond(False)], T0 + 5 * MIN)
    assert kinds(events) == [K.CLEARED]
    assert events[0].alert.updated_ms >= raised.alert.updated_ms
    assert events[0].at_ms >= raised.at_ms
    # restored from the store after a restart, the step back still restarts the timers
    lc2 = Lifecycle(POLICY, lc.saved())
    assert lc2.observe([cond(True, on=5 * MIN)], T0 + 6 * MIN) == []
    (ev,) = lc2.observe([cond(True, on=5 * MIN)], T0 + 11 * MIN)
    assert ev.kind == K.REACTIVATED
    assert ev.alert.updated_ms >= events[0].alert.updated_ms
    assert ev.alert.active_since_ms == T0 + 11 * MIN
    assert lc2.next_deadline_ms() == T0 + 41 * MIN


def test_an_ack_of_an_earlier_activation_does_not_silence_a_reactivation() -> None:
    # the operator acknowledged the cleared alert at T+6; the ack arrived after the alert
    # came back at T+10: it is for the activation they saw, not for this one
    lc = Lifecycle(POLICY)
    (raised,) = lc.observe([cond(True)], T0)
    first = raised.alert.activated_ms
    assert first == T0
    lc.observe([cond(False)], T0 + 5 * MIN)
    (back,) = lc.observe([cond(True)], T0 + 10 * MIN)
    assert back.kind == K.REACTIVATED
    assert back.alert.activated_ms == T0 + 10 * MIN
    assert back.alert.to_wire().activated == T0 + 10 * MIN
    with pytest.raises(LifecycleError, match="earlier activation"):
        lc.acknowledge(
            back.alert.id, actor="ana@gw-1", now_ms=T0 + 11 * MIN, at_ms=T0 + 6 * MIN,
            activated_ms=first,
        )  # fmt: skip
    assert kinds(lc.tick(T0 + 41 * MIN)) == [K.ESCALATED]  # still unacknowledged
    (ev,) = lc.acknowledge(
        back.alert.id, actor="ana@gw-1", now_ms=T0 + 42 * MIN, activated_ms=T0 + 10 * MIN
    )
    assert ev.kind == K.ACKED
    # an ack that names no activation (an older gateway, the API) acknowledges what is there
    (again,) = Lifecycle(POLICY).observe([cond(True)], T0)
    assert again.alert.activated_ms == T0


def test_plant_ack_time_is_kept_within_raise_and_receipt() -> None:
    lc = Lifecycle(POLICY)
    alert_id = lc.observe([cond(True)], T0)[0].alert.id
    (ev,) = lc.acknowledge(alert_id, actor="op@gw-1", now_ms=T0 + 10 * MIN, at_ms=T0 + 3 * MIN)
    assert ev.at_ms == T0 + 3 * MIN
    assert ev.alert.acked_ms == T0 + 3 * MIN
    lc2 = Lifecycle(POLICY)
    alert_id = lc2.observe([cond(True)], T0)[0].alert.id
    (ev,) = lc2.acknowledge(alert_id, actor="op", now_ms=T0 + MIN, at_ms=T0 - 99 * MIN)
    assert ev.at_ms == T0


# -- a stateful property: random operations, invariants after each step ----------------------

CHILDREN = [AlertKey("stuck", "s1", f"lc{i}") for i in range(2)]
ON, OFF = 3 * MIN, 2 * MIN


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lc = Lifecycle(
            LifecyclePolicy(renotify_every_ms=20 * MIN, escalate_after_ms=(7 * MIN,))
        )
        self.now = T0
        self.raise_since: dict[AlertKey, int | None] = {}
        self.clear_since: dict[AlertKey, int | None] = {}
        self.closed: set[str] = set()
        self.seen: set[str] = set()
        self.last_at = 0

    def _check(self, events: list[AlertEvent]) -> None:
        for e in events:
            a = e.alert
            assert e.at_ms >= self.last_at or e.kind == K.ACKED
            self.last_at = max(self.last_at, e.at_ms)
            assert a.id not in self.closed, f"{e.kind} after close"
            if a.id not in self.seen:
                assert e.kind == K.RAISED
                self.seen.add(a.id)
            if e.kind in (K.RENOTIFIED, K.ESCALATED):
                assert not a.acked
                assert a.shelved_until_ms is None
                assert a.suppressed_by is None
            if e.kind in (K.RAISED, K.REACTIVATED) and a.key != GW_KEY:
                since = self.raise_since[a.key]
                assert since is not None
                assert e.at_ms - since >= ON
            if e.kind == K.CLEARED and a.key != GW_KEY and e.reason != "rules changed: gone":
                since = self.clear_since[a.key]
                assert since is not None
                assert e.at_ms - since >= OFF
            if e.kind == K.CLOSED:
                self.closed.add(a.id)

    @rule(dt=st.integers(0, 10 * MIN))
    def wait(self, dt: int) -> None:
        self.now += dt
        self._check(self.lc.tick(self.now))

    @rule(i=st.integers(0, 1), raise_met=st.booleans(), in_band=st.booleans())
    def observe_child(self, i: int, raise_met: bool, in_band: bool) -> None:
        key = CHILDREN[i]
        hold = raise_met or in_band
        if raise_met and self.raise_since.get(key) is None:
            self.raise_since[key] = self.now
        if not raise_met:
            self.raise_since[key] = None
        if not hold and self.clear_since.get(key) is None:
            self.clear_since[key] = self.now
        if hold:
            self.clear_since[key] = None
        c = cond(raise_met, hold, key=key, on=ON, off=OFF)
        self._check(self.lc.observe([c], self.now))

    @rule(offline=st.booleans())
    def observe_gateway(self, offline: bool) -> None:
        self._check(self.lc.observe([gateway_offline(offline)], self.now))

    @precondition(lambda self: bool(self.lc.open_alerts()))
    @rule(data=st.data())
    def acknowledge(self, data: st.DataObject) -> None:
        alert = data.draw(st.sampled_from(self.lc.open_alerts()))
        self._check(self.lc.acknowledge(alert.id, actor="op", now_ms=self.now))
        assert self.lc.alert(alert.id) is None or self.lc.alert(alert.id).acked  # type: ignore[union-attr]

    @precondition(lambda self: bool(self.lc.open_alerts()))
    @rule(data=st.data(), minutes=st.integers(1, 60), unshelve=st.booleans())
    def shelve(self, data: st.DataObject, minutes: int, unshelve: bool) -> None:
        alert = data.draw(st.sampled_from(self.lc.open_alerts()))
        self._check(self.lc.shelve(alert.id, until_ms=self.now + minutes * MIN, actor="op",
                                   now_ms=self.now))  # fmt: skip
        if unshelve:
            self._check(self.lc.unshelve(alert.id, actor="op", now_ms=self.now))

    @rule(i=st.integers(0, 2))
    def retire(self, i: int) -> None:
        """The rule set changed: this track's rule is gone (it may come back later)."""
        key = [*CHILDREN, GW_KEY][i]
        events = self.lc.retire({key: "gone"}, self.now)
        self._check(events)
        assert [e.kind for e in events] in ([], [K.CLEARED], [K.CLEARED, K.CLOSED])
        assert all(e.reason == "rules changed: gone" for e in events[:1])
        assert all(a.state == AlertState.CLEARED for a in self.lc.open_alerts() if a.key == key)
        self.raise_since[key] = None

    @precondition(lambda self: bool(self.lc.open_alerts()))
    @rule(data=st.data(), shelve=st.booleans())
    def command_rolled_back(self, data: st.DataObject, shelve: bool) -> None:
        """A command the shell could not store is undone: no trace of it is left."""

        def state() -> object:
            lc = self.lc
            return lc.saved(), lc.open_alerts(), lc.next_deadline_ms(), lc.tracked_keys()

        self.lc.take_dirty()  # as a shell does after each step
        before = state()
        checkpoint = self.lc.checkpoint()
        alert = data.draw(st.sampled_from(self.lc.open_alerts()))
        if shelve:
            self.lc.shelve(alert.id, until_ms=self.now + 2 * MIN, actor="op", now_ms=self.now + 1)
        else:
            self.lc.acknowledge(alert.id, actor="op", now_ms=self.now + 1)
        self.lc.rollback(checkpoint)
        assert state() == before
        assert self.lc.take_dirty() == []

    @invariant()
    def one_open_alert_per_key(self) -> None:
        alerts = self.lc.open_alerts()
        assert len({a.key for a in alerts}) == len(alerts)
        for a in alerts:
            assert self.lc.alert(a.id) == a
            assert a.open

    @invariant()
    def every_due_timer_has_fired(self) -> None:
        deadline = self.lc.next_deadline_ms()
        assert deadline is None or deadline > self.now


LifecycleMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
test_lifecycle_properties = LifecycleMachine.TestCase
