"""The delivery outbox as a policy without I/O, and the narrow store interface it runs on.

Every notification is written to the store in the same transaction as the lifecycle events
that caused it, before anything is sent; the dispatcher then claims due rows (with a lease, so
a process killed mid-send leaves them to be claimed again), asks :class:`OutboxPolicy` what to
do with them, sends, and settles each one: delivered, retried later with exponential back-off
and jitter, failed for good (a non-retryable error), or expired (undelivered past its TTL).
Token buckets per channel and per recipient bound the rate; when more notifications are due at
once for one recipient than the channel's storm threshold, they become one summary.
Delivery is at least once: a crash between sending and settling sends again, with the same
notification id (the ``webhook-id``, the e-mail ``Message-ID``) so receivers can de-duplicate.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from cloud_service.alerts.errors import DeliveryError
from cloud_service.alerts.records import SEVERITY_RANK
from cloud_service.alerts.settings import ChannelPolicy, OutboxSettings
from shared.messages import Severity

SUMMARY_KIND = "alert.summary"


class Status(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # a non-retryable error: trying again cannot help
    EXPIRED = "expired"  # still undelivered when its time to live ran out
    SUMMARISED = "summarised"  # folded into a summary notification
    SUPERSEDED = "superseded"  # a newer state of the same thing replaced it (MQTT)


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one recipient on one channel, as persisted before sending."""

    id: str  # stable across retries: receivers de-duplicate on it
    channel: str
    recipient: str
    kind: str  # the event type (``alert.raised``) or ``alert.summary``
    payload: bytes
    created_ms: int
    expires_ms: int
    next_attempt_ms: int
    attempts: int = 0
    severity: Severity = Severity.INFO
    alert_id: str | None = None
    supersede_key: str | None = None  # a newer pending row with this key replaces this one
    status: Status = Status.PENDING
    last_error: str | None = None


def new_id() -> str:
    return "msg_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one claimed notification was settled."""

    id: str
    status: Status
    attempts: int
    next_attempt_ms: int
    at_ms: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """A summary to create in place of ``members`` (same channel and recipient)."""

    notification: Notification
    members: tuple[str, ...]


class OutboxStore(Protocol):
    """What the dispatcher needs from persistence (``store.SqlAlertStore`` implements it)."""

    async def enqueue(self, notifications: Sequence[Notification]) -> None: ...

    async def claim_due(self, now_ms: int, limit: int, lease_ms: int) -> list[Notification]: ...

    async def settle(self, outcomes: Sequence[Outcome], summaries: Sequence[Summary] = ()) -> None:
        """Apply outcomes and insert summaries (marking their members) in one transaction."""

    async def next_due_ms(self) -> int | None: ...


class AlertSink(Protocol):
    """One delivery channel. ``send`` returns when the recipient has it, or raises
    :class:`DeliveryError` (``retryable`` tells the outbox whether to try again)."""

    channel: str

    async def send(self, notification: Notification) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_ms: int = 2_000
    cap_ms: int = 600_000
    jitter: float = 0.2

    def delay_ms(self, attempts: int, rand: float, hint_ms: int | None = None) -> int:
        """Back-off after the ``attempts``-th failure; ``rand`` in [0, 1) draws the jitter."""
        delay = min(self.cap_ms, self.base_ms * 2 ** min(max(attempts - 1, 0), 40))
        delay = int(delay * (1 - self.jitter * rand))
        return max(delay, hint_ms or 0, 1)


@dataclass(slots=True)
class TokenBucket:
    rate_per_ms: float
    burst: float
    tokens: float = field(default=-1.0)
    updated_ms: int = 0

    def _fill(self, now_ms: int) -> None:
        if self.tokens < 0:
            self.tokens, self.updated_ms = self.burst, now_ms
        elapsed = max(now_ms - self.updated_ms, 0)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_ms)
        self.updated_ms = max(self.updated_ms, now_ms)

    def available(self, now_ms: int) -> bool:
        self._fill(now_ms)
        return self.tokens >= 1

    def take(self, now_ms: int) -> None:
        self._fill(now_ms)
        self.tokens -= 1

    def ready_at(self, now_ms: int) -> int:
        self._fill(now_ms)
        missing = max(1 - self.tokens, 0)
        return now_ms + int(missing / self.rate_per_ms) + 1 if missing else now_ms


@dataclass(slots=True)
class Plan:
    send: list[Notification] = field(default_factory=list)
    summarise: list[tuple[str, str, list[Notification]]] = field(default_factory=list)
    defer: list[tuple[Notification, int]] = field(default_factory=list)
    expire: list[Notification] = field(default_factory=list)


class OutboxPolicy:
    """Decides, for claimed notifications, what to send now, summarise, defer or expire."""

    def __init__(
        self,
        channels: Mapping[str, ChannelPolicy],
        retry: RetryPolicy,
        default: ChannelPolicy | None = None,
    ) -> None:
        self.channels = dict(channels)
        self.default = default or ChannelPolicy()
        self.retry = retry
        self._buckets: dict[tuple[str, str | None], TokenBucket] = {}

    @classmethod
    def from_settings(cls, s: OutboxSettings) -> OutboxPolicy:
        retry = RetryPolicy(int(s.retry_base_s * 1000), int(s.retry_cap_s * 1000), s.jitter)
        return cls(s.channels, retry)

    def channel(self, name: str) -> ChannelPolicy:
        return self.channels.get(name, self.default)

    def ttl_ms(self, channel: str) -> int:
        return int(self.channel(channel).ttl_s * 1000)

    def plan(self, due: Sequence[Notification], now_ms: int) -> Plan:
        plan = Plan()
        groups: dict[tuple[str, str], list[Notification]] = {}
        for n in sorted(due, key=lambda n: (-SEVERITY_RANK[n.severity], n.created_ms)):
            if now_ms >= n.expires_ms:
                plan.expire.append(n)
            else:
                groups.setdefault((n.channel, n.recipient), []).append(n)
        for (channel, recipient), members in groups.items():
            pol = self.channel(channel)
            buckets = (self._bucket(channel, None, pol), self._bucket(channel, recipient, pol))
            singles = [n for n in members if n.kind != SUMMARY_KIND]
            one_by_one = members
            if pol.storm_threshold is not None and len(singles) > pol.storm_threshold:
                if self._take(buckets, now_ms):
                    plan.summarise.append((channel, recipient, singles))
                else:
                    plan.defer += [(n, self._ready(buckets, now_ms)) for n in singles]
                one_by_one = [n for n in members if n.kind == SUMMARY_KIND]
            for n in one_by_one:
                if self._take(buckets, now_ms):
                    plan.send.append(n)
                else:
                    plan.defer.append((n, self._ready(buckets, now_ms)))
        return plan

    def delivered(self, n: Notification, now_ms: int) -> Outcome:
        return Outcome(n.id, Status.DELIVERED, n.attempts + 1, n.next_attempt_ms, now_ms)

    def failed(self, n: Notification, error: DeliveryError, now_ms: int, rand: float) -> Outcome:
        """Retry with back-off, or give up: not retryable, or the next try would be too late."""
        attempts = n.attempts + 1
        text = str(error)[:1000]
        if not error.retryable:
            return Outcome(n.id, Status.FAILED, attempts, n.next_attempt_ms, now_ms, text)
        hint = None if error.retry_after_s is None else int(error.retry_after_s * 1000)
        at = now_ms + self.retry.delay_ms(attempts, rand, hint)
        if at >= n.expires_ms:
            return Outcome(n.id, Status.EXPIRED, attempts, n.next_attempt_ms, now_ms, text)
        return Outcome(n.id, Status.PENDING, attempts, at, now_ms, text)

    def _bucket(self, channel: str, recipient: str | None, pol: ChannelPolicy) -> TokenBucket:
        key = (channel, recipient)
        b = self._buckets.get(key)
        if b is None:
            rate, burst = (
                (pol.rate_per_min, pol.burst)
                if recipient is None
                else (pol.recipient_rate_per_min, pol.recipient_burst)
            )
            b = self._buckets[key] = TokenBucket(rate / 60_000, float(burst))
        return b

    @staticmethod
    def _take(buckets: tuple[TokenBucket, TokenBucket], now_ms: int) -> bool:
        if all(b.available(now_ms) for b in buckets):
            for b in buckets:
                b.take(now_ms)
            return True
        return False

    @staticmethod
    def _ready(buckets: tuple[TokenBucket, TokenBucket], now_ms: int) -> int:
        return max(b.ready_at(now_ms) for b in buckets)
