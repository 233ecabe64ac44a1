"""Which lifecycle events become which notifications, for whom, in which payload.

* MQTT (recipient ``site/gateway``, payload a contract ``Alert``): every change of what the
  plant shows (raised, reactivated, cleared, acked, closed, shelved, unshelved), with
  ``shelved_until`` while shelved and ``closed`` on the final state. Only the newest state
  of an alert matters there, so each supersedes the older pending one.
* Webhooks (recipient: the endpoint name, payload the event JSON): every event the endpoint
  is scoped to (severity, sites).
* E-mail (recipient: the address): only what needs a person's attention (raised, reactivated,
  re-notified, escalated, unshelved while active and unacknowledged), from the escalation
  level the recipient is on.

Shelved and suppressed alerts call for nobody's attention: their attention events are muted
on every channel (state changes still reach webhooks). The live stream is not routed here: it
carries every event, straight from the event log.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Final

import msgspec

from cloud_service.alerts.outbox import SUMMARY_KIND, Notification, OutboxPolicy, new_id
from cloud_service.alerts.records import SEVERITY_RANK, AlertEvent, AlertRecord, EventKind, iso
from cloud_service.alerts.settings import AlertSettings, RecipientScope
from shared.codec import encode
from shared.messages import Alert, AlertState

MQTT: Final = "mqtt"
WEBHOOK: Final = "webhook"
EMAIL: Final = "email"

_WIRE_KINDS: Final = frozenset(
    {EventKind.RAISED, EventKind.REACTIVATED, EventKind.CLEARED, EventKind.ACKED,
     EventKind.CLOSED, EventKind.SHELVED, EventKind.UNSHELVED}
)  # fmt: skip
_ATTENTION: Final = frozenset(
    {EventKind.RAISED, EventKind.REACTIVATED, EventKind.RENOTIFIED, EventKind.ESCALATED,
     EventKind.UNSHELVED}
)  # fmt: skip
SUMMARY_LIST_MAX: Final = 50


def needs_attention(e: AlertEvent) -> bool:
    a = e.alert
    if e.kind not in _ATTENTION or a.shelved_until_ms is not None or a.suppressed_by:
        return False
    return a.state == AlertState.ACTIVE and not a.acked


def wire_alert(e: AlertEvent) -> Alert:
    """What the plant is told after ``e``: the record's contract ``Alert``, with its shelving
    and, on the final state, ``closed``."""
    a = e.alert
    return msgspec.structs.replace(
        a.to_wire(), shelved_until=a.shelved_until_ms, closed=e.kind == EventKind.CLOSED
    )


def _in_scope(scope: RecipientScope, a: AlertRecord) -> bool:
    if SEVERITY_RANK[a.severity] < SEVERITY_RANK[scope.min_severity]:
        return False
    return not scope.sites or a.key.site in scope.sites


class Router:
    def __init__(self, settings: AlertSettings, policy: OutboxPolicy) -> None:
        self.settings = settings
        self.policy = policy

    def route(self, events: Sequence[AlertEvent], now_ms: int) -> list[Notification]:
        out: list[Notification] = []
        for e in events:
            out += self._mqtt(e, now_ms)
            doc = e.body().encode()
            muted = e.kind in _ATTENTION and not needs_attention(e)
            for ep in self.settings.webhooks.endpoints:
                if not muted and _in_scope(ep, e.alert):
                    out.append(self._new(WEBHOOK, ep.name, e, doc, now_ms))
            email = self.settings.email
            if email is not None and needs_attention(e):
                out += [
                    self._new(EMAIL, r.address, e, doc, now_ms)
                    for r in email.recipients
                    if _in_scope(r, e.alert) and e.alert.escalation >= r.min_escalation
                ]
        return _latest_per_key(out)

    def _mqtt(self, e: AlertEvent, now_ms: int) -> list[Notification]:
        a = e.alert
        if not self.settings.mqtt.enabled or a.gateway is None or e.kind not in _WIRE_KINDS:
            return []
        if e.kind in (EventKind.RAISED, EventKind.REACTIVATED) and a.shelved_until_ms:
            return []  # the plant learns of it when unshelved
        n = self._new(MQTT, f"{a.key.site}/{a.gateway}", e, encode(wire_alert(e)), now_ms)
        return [n]

    def _new(
        self, channel: str, recipient: str, e: AlertEvent, payload: bytes, now_ms: int
    ) -> Notification:
        return Notification(
            id=new_id(),
            channel=channel,
            recipient=recipient,
            kind=e.type,
            payload=payload,
            created_ms=now_ms,
            expires_ms=now_ms + self.policy.ttl_ms(channel),
            next_attempt_ms=now_ms,
            severity=e.alert.severity,
            alert_id=e.alert.id,
            supersede_key=e.alert.id if channel == MQTT else None,
        )

    def summary(
        self, channel: str, recipient: str, members: Sequence[Notification], now_ms: int
    ) -> Notification:
        """One notification standing for ``members`` (a storm): counts and the top alerts."""
        alerts: list[dict[str, object]] = []
        for n in members:
            try:
                data = json.loads(n.payload)["data"]["alert"]
            except (ValueError, KeyError, TypeError):
                data = {"id": n.alert_id}
            alerts.append({"event": n.kind, **{k: data.get(k) for k in _SUMMARY_FIELDS}})
        by_severity = Counter(n.severity.value for n in members)
        top = max((n.severity for n in members), key=SEVERITY_RANK.__getitem__)
        doc = {
            "type": SUMMARY_KIND,
            "timestamp": iso(now_ms),
            "data": {
                "count": len(members),
                "by_severity": dict(by_severity),
                "by_event": dict(Counter(n.kind for n in members)),
                "alerts": alerts[:SUMMARY_LIST_MAX],
                "omitted": max(len(alerts) - SUMMARY_LIST_MAX, 0),
            },
        }
        return Notification(
            id=new_id(),
            channel=channel,
            recipient=recipient,
            kind=SUMMARY_KIND,
            payload=json.dumps(doc, separators=(",", ":")).encode(),
            created_ms=now_ms,
            expires_ms=now_ms + self.policy.ttl_ms(channel),
            next_attempt_ms=now_ms,
            severity=top,
        )


_SUMMARY_FIELDS: Final = ("id", "severity", "site", "subject", "title", "state", "acked")


def _latest_per_key(ns: list[Notification]) -> list[Notification]:
    """Within one batch, only the newest notification per supersede key survives."""
    last = {n.supersede_key: i for i, n in enumerate(ns) if n.supersede_key is not None}
    return [n for i, n in enumerate(ns) if n.supersede_key is None or last[n.supersede_key] == i]
