"""E-mail delivery against a real SMTP server (aiosmtpd) on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alerts_support import condition

from cloud_service.alerts.email import SmtpSink
from cloud_service.alerts.errors import DeliveryError
from cloud_service.alerts.lifecycle import Lifecycle, LifecyclePolicy
from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.routing import Router
from cloud_service.alerts.settings import AlertSettings, EmailRecipient, EmailSettings
from firmware_sim.stack.ports import free_port
from tests.cloud_service.alerts.smtp_support import Inbox, smtp_inbox

NOW = 1_790_000_000_000


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_inbox() as running:
        yield running


def settings(port: int, *addresses: str) -> AlertSettings:
    recipients = [EmailRecipient(address=a) for a in addresses]
    return AlertSettings(email=EmailSettings(host="127.0.0.1", port=port, security="none",
                                             sender="alerts@flightdeck.test",
                                             recipients=recipients))  # fmt: skip


def stockout_mail(s: AlertSettings) -> Any:
    router = Router(s, OutboxPolicy.from_settings(s.outbox))
    events = Lifecycle(LifecyclePolicy()).observe([condition()], NOW)
    return [n for n in router.route(events, NOW) if n.channel == "email"]


async def test_an_alert_mail_reaches_a_real_smtp_server(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    s = settings(port, "planner@example.com")
    (note,) = stockout_mail(s)
    assert s.email is not None
    await SmtpSink(s.email).send(note)
    ((envelope, msg),) = inbox.messages
    assert envelope.rcpt_tos == ["planner@example.com"]
    assert envelope.mail_from == "alerts@flightdeck.test"
    assert msg["Subject"] == "[WARNING] Load cell lc7 stuck"
    assert msg["Message-ID"] == f"<{note.id}@flightdeck>"
    body = msg.get_content()
    assert "lc7 has not changed for 20 min" in body
    assert "Recommended action: Check lc7" in body
    assert "stuck_min: 20" in body


async def test_smtp_refusals_map_to_retryable_or_not(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    s = settings(port, "nobody@example.com", "busy@example.com")
    gone, busy = stockout_mail(s)
    assert s.email is not None
    sink = SmtpSink(s.email)
    with pytest.raises(DeliveryError) as permanent:
        await sink.send(gone)
    with pytest.raises(DeliveryError) as transient:
        await sink.send(busy)
    assert (permanent.value.status, permanent.value.retryable) == (550, False)
    assert (transient.value.status, transient.value.retryable) == (451, True)
    assert inbox.messages == []


async def test_an_unreachable_server_is_retryable() -> None:
    s = settings(free_port(), "planner@example.com")
    (note,) = stockout_mail(s)
    assert s.email is not None
    with pytest.raises(DeliveryError) as info:
        await SmtpSink(s.email).send(note)
    assert info.value.retryable
