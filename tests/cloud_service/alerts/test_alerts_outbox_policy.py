"""The outbox policy without I/O: back-off, expiry, rate limits, storm summaries."""

from __future__ import annotations

from cloud_service.alerts.errors import DeliveryError
from cloud_service.alerts.outbox import (
    SUMMARY_KIND,
    Notification,
    OutboxPolicy,
    RetryPolicy,
    Status,
    TokenBucket,
)
from cloud_service.alerts.settings import ChannelPolicy
from shared.messages import Severity

NOW = 1_790_000_000_000
HOUR = 3_600_000


def note(i: int, *, recipient: str = "ops@example.com", channel: str = "email", **kw: object
         ) -> Notification:  # fmt: skip
    base: dict[str, object] = dict(
        id=f"msg_{i}", channel=channel, recipient=recipient, kind="alert.raised",
        payload=b"{}", created_ms=NOW + i, expires_ms=NOW + HOUR, next_attempt_ms=NOW,
    )  # fmt: skip
    return Notification(**{**base, **kw})  # type: ignore[arg-type]


def policy(**channel: object) -> OutboxPolicy:
    pol = ChannelPolicy(**{"recipient_burst": 2, "storm_threshold": 5, **channel})  # type: ignore[arg-type]
    return OutboxPolicy({"email": pol}, RetryPolicy(base_ms=1000, cap_ms=60_000, jitter=0.5))


def err(retryable: bool = True, retry_after_s: float | None = None) -> DeliveryError:
    return DeliveryError("boom", channel="email", recipient="x", retryable=retryable,
                         retry_after_s=retry_after_s)  # fmt: skip


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens() -> None:
    r = RetryPolicy(base_ms=1000, cap_ms=60_000, jitter=0.5)
    assert [r.delay_ms(a, 0.0) for a in (1, 2, 3, 7, 8, 50)] == [
        1000, 2000, 4000, 60_000, 60_000, 60_000,
    ]  # fmt: skip
    assert 1000 <= r.delay_ms(2, 0.999) < 1010  # at most half is taken off
    assert r.delay_ms(1, 0.0, hint_ms=30_000) == 30_000  # a server's Retry-After wins


def test_failures_retry_fail_or_expire() -> None:
    p = policy()
    n = note(1)
    retry = p.failed(n, err(), NOW, 0.0)
    assert (retry.status, retry.attempts, retry.next_attempt_ms) == (Status.PENDING, 1, NOW + 1000)
    assert p.failed(n, err(retryable=False), NOW, 0.0).status == Status.FAILED
    late = note(2, attempts=9, expires_ms=NOW + 10_000)
    assert p.failed(late, err(), NOW, 0.0).status == Status.EXPIRED
    assert p.delivered(n, NOW).status == Status.DELIVERED


def test_expired_notifications_are_not_sent() -> None:
    plan = policy().plan([note(1, expires_ms=NOW), note(2)], NOW)
    assert [n.id for n in plan.expire] == ["msg_1"]
    assert [n.id for n in plan.send] == ["msg_2"]


def test_per_recipient_rate_limit_defers_the_rest_until_a_token_is_back() -> None:
    p = policy(recipient_rate_per_min=60)  # one a second after a burst of 2
    plan = p.plan([note(i) for i in range(4)] + [note(9, recipient="boss@example.com")], NOW)
    assert sorted(n.id for n in plan.send) == ["msg_0", "msg_1", "msg_9"]
    assert [(n.id, at - NOW) for n, at in plan.defer] == [("msg_2", 1001), ("msg_3", 1001)]
    later = p.plan([n for n, _ in plan.defer], NOW + 1001)
    assert [n.id for n in later.send] == ["msg_2"]


def test_channel_rate_limit_applies_across_recipients() -> None:
    p = policy(burst=3, recipient_burst=10)
    plan = p.plan([note(i, recipient=f"r{i}@example.com") for i in range(5)], NOW)
    assert len(plan.send) == 3
    assert len(plan.defer) == 2


def test_a_storm_is_summarised_in_one_notification_per_recipient() -> None:
    p = policy()
    storm = [note(i) for i in range(8)]
    calm = [note(20 + i, recipient="boss@example.com") for i in range(2)]
    plan = p.plan(storm + calm, NOW)
    ((channel, recipient, members),) = plan.summarise
    assert (channel, recipient, len(members)) == ("email", "ops@example.com", 8)
    assert sorted(n.id for n in plan.send) == ["msg_20", "msg_21"]
    summary = note(99, kind=SUMMARY_KIND)
    assert [n.id for n in p.plan([summary], NOW + 1).send] == ["msg_99"]


def test_critical_goes_first_when_tokens_are_scarce() -> None:
    p = policy()
    ns = [note(1), note(2), note(3, severity=Severity.CRITICAL)]
    assert [n.id for n in p.plan(ns, NOW).send] == ["msg_3", "msg_1"]


def test_token_bucket_refills_at_its_rate() -> None:
    b = TokenBucket(rate_per_ms=1 / 1000, burst=2)
    b.take(NOW)
    b.take(NOW)
    assert not b.available(NOW)
    assert b.ready_at(NOW) == NOW + 1001
    assert b.available(NOW + 1000)
    assert not TokenBucket(1 / 1000, 2, tokens=0.5, updated_ms=NOW).available(NOW + 499)
