"""Alerts of a rule that is removed, renamed, disabled or retyped, or whose subject left the
rule's scope, clear ("rules changed") instead of staying active and re-notifying for ever."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloud_service.alerts.inputs import ConditionInputs, GatewayFigures, SignalFigures
from cloud_service.alerts.lifecycle import Lifecycle, LifecyclePolicy
from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.records import AlertEvent, AlertKey, EventKind, RuleType
from cloud_service.alerts.routing import Router
from cloud_service.alerts.rules import Rule, evaluate, orphaned, rules_from_data
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings
from cloud_service.alerts.store import SqlAlertStore, create_sqlite_engine, create_tables
from shared.messages import AlertState

NOW = 1_790_000_000_000
MIN = 60_000
H = 60 * MIN
K = EventKind
STUCK: dict[str, Any] = {
    "id": "stuck",
    "type": "sensor_stuck",
    "when": [{"metric": "stuck_min", "op": ">=", "value": 15}],
}


def rules(*defs: dict[str, Any]) -> list[Rule]:
    return rules_from_data({"rules": list(defs)}, "test")


def inputs(now: int, *signals: str, gateway: str = "gw-1") -> ConditionInputs:
    figures = [
        SignalFigures(site="s1", gateway=gateway, signal=s, stuck_since_ms=NOW - H,
                      last_seen_ms=now)
        for s in signals
    ]  # fmt: skip
    return ConditionInputs(now, signals=figures)


def kinds(events: list[AlertEvent]) -> list[str]:
    return [e.kind.value for e in events]


# -- which tracks are orphans (pure) -----------------------------------------------------------


def test_orphans_are_tracks_no_rule_of_the_set_evaluates_any_more() -> None:
    subject = "gw-1:lc7"  # a signal's subject names its gateway (explain.signal_subject)
    tracked = {
        AlertKey("stuck", "s1", subject): RuleType.SENSOR_STUCK,
        AlertKey("gone", "s1", subject): RuleType.SENSOR_STUCK,
        AlertKey("off", "s1", subject): RuleType.SENSOR_STUCK,
        AlertKey("retyped", "s1", subject): RuleType.SENSOR_STUCK,
        AlertKey("narrow", "s1", subject): RuleType.SENSOR_STUCK,
        AlertKey("narrow", "s1", "gw-1:lc9"): RuleType.SENSOR_STUCK,  # not in the inputs
    }
    now_rules = rules(
        STUCK,
        {**STUCK, "id": "off", "enabled": False},
        {"id": "retyped", "type": "no_data"},
        {**STUCK, "id": "narrow", "scope": {"gateways": ["gw-2"]}},
    )
    snapshot = inputs(NOW, "lc7")
    evaluated = {s.key for s in evaluate(now_rules, snapshot)}
    gone = orphaned(now_rules, snapshot, tracked, evaluated)
    assert gone == {
        AlertKey("gone", "s1", subject): "rule 'gone' no longer exists",
        AlertKey("off", "s1", subject): "rule 'off' is disabled",
        AlertKey("retyped", "s1", subject): "rule 'retyped' is now of type no_data",
        AlertKey("narrow", "s1", subject): f"{subject} at s1 is out of the scope of rule 'narrow'",
    }
    assert (
        orphaned(rules(STUCK), snapshot, {AlertKey("stuck", "s1", subject): RuleType.SENSOR_STUCK})
        == {}
    )


# -- retiring them (pure lifecycle) ------------------------------------------------------------


def test_a_retired_active_alert_clears_at_once_and_stops_reminding() -> None:
    lc = Lifecycle(LifecyclePolicy(renotify_every_ms=H, escalate_after_ms=(30 * MIN,)))
    (on,) = rules(STUCK)
    (raised,) = lc.observe(evaluate([on], inputs(NOW, "lc7")), NOW)
    key = raised.alert.key
    (cleared,) = lc.retire({key: "rule 'stuck' is disabled"}, NOW + MIN)
    assert (cleared.kind, cleared.actor) == (K.CLEARED, "system")
    assert cleared.reason == "rules changed: rule 'stuck' is disabled"
    assert cleared.alert.state == AlertState.CLEARED
    assert lc.retire({key: "again"}, NOW + 2 * MIN) == []  # idempotent
    later = [e for h in range(1, 25) for e in lc.tick(NOW + h * H)]
    assert later == []
    assert lc.next_deadline_ms() is None
    # still awaiting its acknowledgement, as any cleared alert; acking closes it
    assert [a.state for a in lc.open_alerts()] == [AlertState.CLEARED]
    acked = lc.acknowledge(raised.alert.id, actor="ana", now_ms=NOW + 25 * H)
    assert kinds(acked) == ["acked", "closed"]
    assert lc.tick(NOW + 25 * H) == []
    assert lc.tracked_keys() == {}


def test_retiring_drops_a_pending_raise_and_closes_what_needs_no_ack() -> None:
    lc = Lifecycle(LifecyclePolicy())
    (slow,) = rules({**STUCK, "for": "10 minutes"})
    assert lc.observe(evaluate([slow], inputs(NOW, "lc7")), NOW) == []  # pending on-delay
    assert lc.retire({k: "gone" for k in lc.tracked_keys()}, NOW + MIN) == []
    assert lc.tick(NOW + 20 * MIN) == []
    assert lc.tracked_keys() == {}

    (quiet,) = rules({**STUCK, "ack_required": False})
    lc.observe(evaluate([quiet], inputs(NOW, "lc7")), NOW + 21 * MIN)
    retired = lc.retire({k: "rule 'stuck' no longer exists" for k in lc.tracked_keys()}, NOW + H)
    assert kinds(retired) == ["cleared", "closed"]
    assert lc.open_alerts() == []


def test_retiring_the_gateway_rule_unsuppresses_what_it_suppressed() -> None:
    lc = Lifecycle(LifecyclePolicy())
    both = rules(STUCK, {"id": "gw-off", "type": "gateway_offline"})
    snap = ConditionInputs(
        NOW, signals=inputs(NOW, "lc7").signals,
        gateways=[GatewayFigures("s1", "gw-1", False, NOW - H, NOW - H)],
    )  # fmt: skip
    events = lc.observe(evaluate(both, snap), NOW)
    assert sorted(kinds(events)) == ["raised"]  # the gateway's; the signal's is suppressed
    only_stuck = rules(STUCK)
    snap = ConditionInputs(NOW + MIN, signals=snap.signals, gateways=snap.gateways)
    gone = orphaned(only_stuck, snap, lc.tracked_keys())
    assert list(gone) == [AlertKey("gw-off", "s1", "gw-1")]
    events = lc.retire(gone, NOW + MIN) + lc.observe(evaluate(only_stuck, snap), NOW + MIN)
    assert kinds(events) == ["cleared", "raised"]  # the stuck signal is no longer hidden


# -- the service: a rule set that changes, and one that changed while it was down -------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlAlertStore]:
    engine = create_sqlite_engine(tmp_path / "alerts.sqlite")
    await create_tables(engine)
    yield SqlAlertStore(engine)
    await engine.dispose()


def router() -> Router:
    settings = AlertSettings()
    return Router(settings, OutboxPolicy.from_settings(settings.outbox))


@pytest.mark.parametrize(
    "change",
    [
        [{**STUCK, "enabled": False}],  # disabled
        [],  # deleted
        [{**STUCK, "id": "stuck-renamed"}],  # renamed
        [{**STUCK, "scope": {"gateways": ["gw-2"]}}],  # the subject left its scope
    ],
    ids=["disabled", "deleted", "renamed", "out-of-scope"],
)
async def test_after_a_rule_change_the_alert_clears_and_stays_quiet(
    store: SqlAlertStore, change: list[dict[str, Any]]
) -> None:
    service = await AlertService.open(store, router())
    (raised,) = await service.evaluate(rules(STUCK), inputs(NOW, "lc7"))
    changed = rules(*change)
    events = await service.evaluate(changed, inputs(NOW + MIN, "lc7"))
    assert [(e.kind, e.alert.id) for e in events][:1] == [(K.CLEARED, raised.alert.id)]
    assert events[0].reason.startswith("rules changed: ")
    later: list[AlertEvent] = []
    for h in range(1, 25):
        later += await service.evaluate(changed, inputs(NOW + h * H, "lc7"))
    assert [e for e in later if e.alert.id == raised.alert.id] == []
    assert [a.state for a in service.open_alerts() if a.id == raised.alert.id] == [
        AlertState.CLEARED
    ]
    logged = [e.type for e in await store.events_after(0) if raised.alert.id in e.body]
    assert logged == ["alert.raised", "alert.cleared"]  # no reminder, no escalation


async def test_a_rule_deleted_while_the_service_was_down_clears_its_restored_alert(
    store: SqlAlertStore,
) -> None:
    service = await AlertService.open(store, router())
    (raised,) = await service.evaluate(rules(STUCK), inputs(NOW, "lc7"))
    restarted = await AlertService.open(store, router())
    assert [a.id for a in restarted.open_alerts()] == [raised.alert.id]
    events = await restarted.evaluate([], inputs(NOW + H, "lc7"))
    assert kinds(events) == ["cleared"]
    assert events[0].reason == "rules changed: rule 'stuck' no longer exists"
