"""Which events reach which channel and recipient."""

from __future__ import annotations

import json

from alerts_support import condition
from pydantic import SecretStr

from cloud_service.alerts.lifecycle import Lifecycle, LifecyclePolicy
from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.routing import Router
from cloud_service.alerts.settings import (
    AlertSettings,
    EmailRecipient,
    EmailSettings,
    WebhookEndpoint,
    WebhookSettings,
)
from cloud_service.alerts.webhooks import new_secret
from shared.codec import MessageDecoder
from shared.messages import Alert, Severity

NOW = 1_790_000_000_000
MIN = 60_000


def _hook(name: str, **kw: object) -> WebhookEndpoint:
    url = f"https://hooks.example/{name}"
    return WebhookEndpoint(name=name, url=url, secrets=[SecretStr(new_secret())], **kw)  # type: ignore[arg-type]


SETTINGS = AlertSettings(
    webhooks=WebhookSettings(
        endpoints=[
            _hook("all"),
            _hook("crit-s2", min_severity=Severity.CRITICAL, sites=frozenset({"s2"})),
        ]
    ),
    email=EmailSettings(
        recipients=[
            EmailRecipient(address="planner@example.com"),
            EmailRecipient(address="boss@example.com", min_escalation=1),
        ]
    ),
)


def routed(events: list, settings: AlertSettings = SETTINGS) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    router = Router(settings, OutboxPolicy.from_settings(settings.outbox))
    return [(n.channel, n.recipient, n.kind) for n in router.route(events, NOW)]


def test_a_new_alert_goes_to_the_plant_the_scoped_webhooks_and_first_level_mail() -> None:
    lc = Lifecycle(LifecyclePolicy())
    events = lc.observe([condition(), condition("x", site="s2", severity=Severity.CRITICAL)], NOW)
    assert routed(events) == [
        ("mqtt", "s1/gw-1", "alert.raised"),
        ("webhook", "all", "alert.raised"),
        ("email", "planner@example.com", "alert.raised"),
        ("mqtt", "s2/gw-1", "alert.raised"),
        ("webhook", "all", "alert.raised"),
        ("webhook", "crit-s2", "alert.raised"),
        ("email", "planner@example.com", "alert.raised"),
    ]


def test_escalation_reaches_the_next_level_and_state_changes_skip_mail() -> None:
    lc = Lifecycle(LifecyclePolicy(escalate_after_ms=(30 * MIN,)))
    lc.observe([condition()], NOW)
    escalated = lc.tick(NOW + 30 * MIN)
    assert ("email", "boss@example.com", "alert.escalated") in routed(escalated)
    acked = lc.acknowledge(escalated[0].alert.id, actor="ana", now_ms=NOW + 31 * MIN)
    assert routed(acked) == [("mqtt", "s1/gw-1", "alert.acked"), ("webhook", "all", "alert.acked")]


def test_shelved_alerts_call_for_no_attention_until_unshelved() -> None:
    lc = Lifecycle(LifecyclePolicy(renotify_every_ms=MIN, escalate_after_ms=()))
    (raised,) = lc.observe([condition()], NOW)
    shelved = lc.shelve(raised.alert.id, until_ms=NOW + 10 * MIN, actor="ana", now_ms=NOW)
    # the plant learns it is shelved (its andon goes dark); no one is called for it
    assert [c for c, _, _ in routed(shelved)] == ["mqtt", "webhook"]
    assert lc.tick(NOW + 5 * MIN) == []
    lc.observe([condition(raise_met=False)], NOW + 6 * MIN)  # cleared while shelved
    again = lc.observe([condition()], NOW + 7 * MIN)  # reactivated while shelved
    assert [c for c, _, _ in routed(again)] == []
    back = lc.tick(NOW + 10 * MIN)
    assert ("email", "planner@example.com", "alert.unshelved") in routed(back)
    assert ("mqtt", "s1/gw-1", "alert.unshelved") in routed(back)


def test_the_mqtt_payload_is_the_contract_alert() -> None:
    (raised,) = Lifecycle(LifecyclePolicy()).observe([condition()], NOW)
    router = Router(SETTINGS, OutboxPolicy.from_settings(SETTINGS.outbox))
    mqtt, webhook, _ = router.route([raised], NOW)
    alert = MessageDecoder(Alert).decode(mqtt.payload)
    assert (alert.id, alert.rule, alert.subject, alert.raised) == (
        raised.alert.id,
        "stuck",
        "lc7",
        NOW,
    )
    doc = json.loads(webhook.payload)
    assert doc["type"] == "alert.raised"
    assert doc["data"]["alert"]["action"] == "Check lc7"
    assert mqtt.supersede_key == raised.alert.id
    assert webhook.supersede_key is None
