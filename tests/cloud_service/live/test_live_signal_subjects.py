"""A signal's alerts are its gateway's: signal ids are unique per gateway, not per site.

Two lines running the same PLC programme announce the same tag names from two gateways of one
site. Each signal gets its own alerts (subject ``gateway:signal``); alerts stored before that,
under the bare signal id, clear after an upgrade instead of staying open for ever.
"""

from __future__ import annotations

import random
from pathlib import Path

from cloud_service.alerts.explain import signal_subject
from cloud_service.alerts.lifecycle import Lifecycle, LifecyclePolicy
from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.records import AlertEvent, AlertKey, ConditionState, RuleType
from cloud_service.alerts.routing import Router
from cloud_service.alerts.rules import evaluate, load_rules, rules_from_data
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings, MqttAlertSettings
from cloud_service.alerts.store import SqlAlertStore, create_sqlite_engine, create_tables
from cloud_service.ingest.health import HealthCore
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.monitor import _SIGNAL_RULES, Monitor, silence_bounds
from shared.messages import (
    AlertState,
    Birth,
    GatewayState,
    Reading,
    Severity,
    SignalKind,
    SignalSpec,
    TelemetryBatch,
)

SITE = "s1"
T0 = 1_790_000_000_000
S = 1000
MIN = 60 * S
GATEWAYS = ("gwA", "gwB")
NAMES = ("line.temp", "line.speed")


class Plant:
    """Two gateways with the same tag names; gwA's ``line.temp`` dies after 5 minutes."""

    def __init__(self) -> None:
        self.live = LiveAnalytics()
        self.health = HealthCore(3.0)
        self.seq = dict.fromkeys(GATEWAYS, 0)
        self.rng = random.Random(3)
        for gw in GATEWAYS:
            birth = Birth(
                gateway=gw, site=SITE, boot="b1", agent_version="t", config_hash="x",
                started_ms=T0,
                signals=[SignalSpec(id=s, kind=SignalKind.SENSOR, period_s=10) for s in NAMES],
            )  # fmt: skip
            self.live.on_birth(SITE, birth)
            self.health.birth(SITE, birth, T0)
            self.health.state(SITE, gw, GatewayState.ONLINE, T0)

    def send(self, now: int) -> None:
        for gw in GATEWAYS:
            dead = gw == "gwA" and now >= T0 + 5 * MIN
            names = ["line.speed"] if dead else list(NAMES)
            self.seq[gw] += 1
            readings = [Reading(n, now, 20 + self.rng.random()) for n in names]
            batch = TelemetryBatch(gateway=gw, boot="b1", seq=self.seq[gw], readings=readings)
            self.live.on_batch(SITE, gw, batch, now)
            self.health.seen(SITE, gw, dict.fromkeys(names, now), now)
        self.health.tick(now)


def test_the_same_signal_id_on_two_gateways_has_an_alert_each() -> None:
    """gwA's dead ``line.temp`` raises its no-data alert and keeps it while gwB's healthy
    ``line.temp`` goes on (they used to share one key: gwB's state cleared gwA's alert)."""
    plant, rules = Plant(), load_rules()
    silence = silence_bounds(rules)
    lc = Lifecycle(LifecyclePolicy())
    events: list[AlertEvent] = []
    for now in range(T0, T0 + 60 * MIN, 10 * S):
        plant.send(now)
        tracked = {(s, j) for rt, s, j in lc.tracked() if rt in _SIGNAL_RULES}
        inputs = plant.live.inputs(now, plant.health.gateways(), tracked, silence)
        events += lc.observe(evaluate(rules, inputs), now)
    raised = [e for e in events if e.kind.value == "raised"]
    assert [(e.alert.key.rule, e.alert.key.subject, e.alert.gateway) for e in raised] == [
        ("no-data", "gwA:line.temp", "gwA")
    ]
    assert raised[0].at_ms == T0 + 5 * MIN - 10 * S + 10 * MIN  # 10 min after its last reading
    assert not [e for e in events if e.kind.value == "cleared"]
    [alert] = lc.open_alerts()
    assert alert.state is AlertState.ACTIVE
    assert "line.temp" in alert.title
    assert "gateway gwA" in alert.message + alert.action


def test_rule_scopes_still_filter_by_signal_and_gateway() -> None:
    plant = Plant()
    for now in range(T0, T0 + 20 * MIN, 10 * S):
        plant.send(now)
    inputs = plant.live.inputs(T0 + 20 * MIN, plant.health.gateways(), silence=[(0.0, 0.0)])
    base = {"id": "quiet", "type": "no_data", "when": [{"metric": "silent_min", "op": ">=",
                                                          "value": 0}]}  # fmt: skip

    def subjects(scope: dict[str, list[str]]) -> list[str]:
        rules = rules_from_data({"rules": [{**base, "scope": scope}]}, "test")
        return sorted(s.key.subject for s in evaluate(rules, inputs))

    assert subjects({"signals": ["line.temp"]}) == ["gwA:line.temp", "gwB:line.temp"]
    assert subjects({"signals": ["line.temp"], "gateways": ["gwB"]}) == ["gwB:line.temp"]
    assert subjects({"gateways": ["gwA"]}) == ["gwA:line.speed", "gwA:line.temp"]
    assert signal_subject("gwA", "line.temp") == "gwA:line.temp"
    long = signal_subject("g" * 64, "s" * 64)  # too long for one id: a prefix and a hash
    assert len(long) <= 64
    assert long != signal_subject("g" * 64, "s" * 63 + "t")


def _router() -> Router:
    settings = AlertSettings(mqtt=MqttAlertSettings(enabled=False))
    return Router(settings, OutboxPolicy.from_settings(settings.outbox))


async def test_an_alert_stored_under_the_bare_signal_id_clears_after_the_upgrade(
    tmp_path: Path,
) -> None:
    """An open no-data alert stored by the previous version (subject ``line.temp``, no
    gateway in it) is restored; no rule evaluates that subject any more, so the live loop
    gives it unknown figures: it clears (and closes once acknowledged), while gwA's still
    dead ``line.temp`` raises its own alert and gwB's raises nothing."""
    engine = create_sqlite_engine(tmp_path / "alerts.db")
    await create_tables(engine)
    store = SqlAlertStore(engine)
    old_key = AlertKey("no-data", SITE, "line.temp")
    before = await AlertService.open(store, _router())
    old_state = ConditionState(
        key=old_key, rule_type=RuleType.NO_DATA, raise_met=True, hold_met=True,
        severity=Severity.WARNING, title="No data from line.temp for 12 min",
        message="Last good reading at 00:00 UTC", action="Check line.temp", figures={},
        reason="silent_min = 12 (>= 10: yes)", gateway="gwA",
    )  # fmt: skip
    [raised] = await before.observe([old_state], T0)
    assert raised.kind.value == "raised"
    await engine.dispose()

    engine = create_sqlite_engine(tmp_path / "alerts.db")
    try:
        service = await AlertService.open(SqlAlertStore(engine), _router())
        [restored] = service.open_alerts()
        assert restored.key == old_key
        plant = Plant()
        clock = [T0]
        monitor = Monitor(plant.live, service, load_rules(), health=plant.health,
                          clock=lambda: clock[0])  # fmt: skip
        events: list[AlertEvent] = []
        for now in range(T0, T0 + 30 * MIN, 10 * S):
            clock[0] = now
            plant.send(now)
            events += await monitor.step()
        by_subject = [(e.kind.value, e.alert.key.subject, e.at_ms - T0) for e in events]
        assert ("cleared", "line.temp", 0) in by_subject  # no off-delay on no-data
        assert [(k, s) for k, s, _ in by_subject if s != "line.temp"] == [
            ("raised", "gwA:line.temp")
        ]
        cleared = next(e for e in events if e.alert.key == old_key)
        assert cleared.alert.state is AlertState.CLEARED
        assert "per gateway" in cleared.alert.title
        await service.acknowledge(restored.id, actor="op", now_ms=clock[0])
        assert [a.key.subject for a in service.open_alerts()] == ["gwA:line.temp"]
        clock[0] += 10 * S
        await monitor.step()
        tracked = {subject for _, _, subject in service.lifecycle.tracked()}
        assert "line.temp" not in tracked  # closed: not followed any more
    finally:
        await engine.dispose()


def test_ids_with_colons_do_not_compose_the_same_subject() -> None:
    # ids may contain ":": gateway "gw" + signal "a:b" and gateway "gw:a" + signal "b" would
    # both read "gw:a:b", and the healthy one's state would clear the other's alert
    assert signal_subject("gw", "a:b") != signal_subject("gw:a", "b")
    assert signal_subject("gw", "a:b") == "gw:a:b"  # the plain form where it is unambiguous
    live = LiveAnalytics()
    for gw, sig in (("gw", "a:b"), ("gw:a", "b")):
        birth = Birth(
            gateway=gw, site=SITE, boot="b1", agent_version="t", config_hash="x",
            started_ms=T0, signals=[SignalSpec(id=sig, kind=SignalKind.SENSOR, period_s=10)],
        )  # fmt: skip
        live.on_birth(SITE, birth)
    subjects = {k: v for k, v in live.index.by_subject.items() if k[0] == SITE}
    assert len(subjects) == 2
    assert all(len(ids) == 1 for ids in subjects.values())
