"""The values that flow between rules, lifecycle, store and delivery (no behaviour, no I/O).

Frozen dataclasses: the lifecycle hands out snapshots (``AlertRecord`` inside each
``AlertEvent``) that the store, the router and the stream may keep without copying.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from shared.ids import ID_MAX_LENGTH, is_valid_id
from shared.messages import Alert, AlertState, Severity

SEVERITY_RANK: Final = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
SYSTEM: Final = "system"  # the actor of transitions nobody asked for


class RuleType(StrEnum):
    STOCKOUT_RISK = "stockout_risk"
    REORDER_NOW = "reorder_now"
    CONSUMPTION_ABOVE_PLAN = "consumption_above_plan"
    PRODUCTION_BELOW_PLAN = "production_below_plan"
    SIGNAL_ANOMALY = "signal_anomaly"
    SENSOR_STUCK = "sensor_stuck"
    NO_DATA = "no_data"
    GATEWAY_OFFLINE = "gateway_offline"


class EventKind(StrEnum):
    RAISED = "raised"  # a new occurrence became active
    REACTIVATED = "reactivated"  # a cleared, still unacknowledged occurrence is active again
    CLEARED = "cleared"  # the condition ended (after the off-delay)
    ACKED = "acked"
    CLOSED = "closed"  # cleared and acknowledged: gone from the active set
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    SUPPRESSED = "suppressed"  # its gateway is offline: handled by the gateway's alert
    UNSUPPRESSED = "unsuppressed"
    RENOTIFIED = "renotified"  # still active and unacknowledged: tell again
    ESCALATED = "escalated"  # unacknowledged too long: tell the next level


@dataclass(frozen=True, slots=True, order=True)
class AlertKey:
    """De-duplication key: at most one open alert per rule and subject (at a site)."""

    rule: str
    site: str
    subject: str

    def text(self) -> str:
        return f"{self.rule}|{self.site}|{self.subject}"


def compose_subject(*parts: str | None) -> str:
    """Join id parts with ``:`` into one id; a too long result keeps a prefix and a hash."""
    joined = ":".join(p for p in parts if p)
    if len(joined) <= ID_MAX_LENGTH and is_valid_id(joined):
        return joined
    digest = hashlib.blake2b(joined.encode(), digest_size=6).hexdigest()
    head = "".join(c if c.isalnum() or c in "_.:-" else "_" for c in joined)[:40].lstrip("_.:-")
    return f"{head or 'x'}-{digest}"


@dataclass(frozen=True, slots=True)
class ConditionState:
    """One rule evaluated for one subject at one instant, with the words and figures for people.

    ``raise_met``: the condition to raise holds. ``hold_met``: the relaxed condition (thresholds
    moved by each condition's deadband) holds, so an active alert stays active; it is always
    true when ``raise_met`` is. ``gateway`` is the parent whose outage suppresses this alert
    (for a ``gateway_offline`` rule: the gateway itself).
    """

    key: AlertKey
    rule_type: RuleType
    raise_met: bool
    hold_met: bool
    severity: Severity
    title: str
    message: str = ""
    action: str = ""
    figures: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""  # which conditions hold, with their figures, for the event log
    gateway: str | None = None
    on_delay_ms: int = 0
    off_delay_ms: int = 0
    ack_required: bool = True


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert occurrence as it stands after a transition."""

    id: str
    key: AlertKey
    rule_type: RuleType
    severity: Severity
    state: AlertState
    acked: bool
    title: str
    message: str
    action: str
    figures: dict[str, float]
    raised_ms: int
    updated_ms: int
    active_since_ms: int
    gateway: str | None = None
    ack_required: bool = True
    acked_by: str | None = None
    acked_ms: int | None = None
    escalation: int = 0
    shelved_until_ms: int | None = None
    suppressed_by: str | None = None
    #: when this activation began (its raise or latest reactivation): it names the activation
    #: an operator acknowledged, unlike ``active_since_ms``, which reminders restart from
    activated_ms: int = 0

    @property
    def open(self) -> bool:
        """Still in the active set: active, or cleared but awaiting acknowledgement."""
        return self.state == AlertState.ACTIVE or (self.ack_required and not self.acked)

    def to_wire(self) -> Alert:
        """The contract message for the plant (``shared.messages.Alert``)."""
        return Alert(
            id=self.id,
            rule=self.key.rule,
            severity=self.severity,
            state=self.state,
            acked=self.acked,
            subject=self.key.subject,
            title=_clip(_one_line(self.title), 256),
            message=_clip(self.message, 4096),
            action=_clip(self.action, 4096),
            figures=wire_figures(self.figures),
            raised=self.raised_ms,
            updated=self.updated_ms,
            activated=self.activated_ms or None,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.key.rule,
            "type": self.rule_type.value,
            "site": self.key.site,
            "subject": self.key.subject,
            "gateway": self.gateway,
            "severity": self.severity.value,
            "state": self.state.value,
            "acked": self.acked,
            "acked_by": self.acked_by,
            "acked_at": iso(self.acked_ms),
            "title": self.title,
            "message": self.message,
            "action": self.action,
            "figures": wire_figures(self.figures),
            "raised_at": iso(self.raised_ms),
            "updated_at": iso(self.updated_ms),
            "escalation": self.escalation,
            "shelved_until": iso(self.shelved_until_ms),
            "suppressed_by": self.suppressed_by,
        }


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One transition: what happened to which alert, when, who did it and why."""

    kind: EventKind
    at_ms: int
    actor: str
    reason: str
    alert: AlertRecord

    @property
    def type(self) -> str:
        """The event type on the wire (webhooks, SSE): ``alert.raised`` etc."""
        return f"alert.{self.kind.value}"

    def body(self) -> str:
        """The event as compact JSON: the webhook body, the SSE data, the stored log entry."""
        return json.dumps(self.as_json(), separators=(",", ":"), ensure_ascii=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "timestamp": iso(self.at_ms),
            "data": {"actor": self.actor, "reason": self.reason, "alert": self.alert.as_json()},
        }


def wire_figures(figures: Mapping[str, float]) -> dict[str, float]:
    """Figures the contract can carry: id-shaped names, finite values."""
    return {k: float(v) for k, v in figures.items() if is_valid_id(k) and math.isfinite(v)}


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    clean = "".join(c for c in text if c in "\t\n" or (c >= " " and c != "\x7f"))
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
