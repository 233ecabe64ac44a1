"""The ``email`` channel: one plain-text message per notification over SMTP.

The stdlib ``smtplib`` in a worker thread (no extra dependency; alert mail is a trickle).
The ``Message-ID`` is derived from the notification id, so a message re-sent after a crash
is recognisably the same one. SMTP replies map onto retryability: 4xx and connection
failures are retried by the outbox, 5xx (bad recipient, refused content) are not.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from cloud_service.alerts.errors import DeliveryError
from cloud_service.alerts.outbox import SUMMARY_KIND, Notification
from cloud_service.alerts.settings import EmailSettings


def render(n: Notification) -> tuple[str, str]:
    """(subject, body) for a notification's JSON event or summary."""
    doc: dict[str, Any] = json.loads(n.payload)
    data = doc.get("data", {})
    if n.kind == SUMMARY_KIND:
        count = data.get("count", 0)
        lines = [f"{count} alert notifications were summarised to avoid a flood:", ""]
        for a in data.get("alerts", []):
            lines.append(f"- [{str(a.get('severity')).upper()}] {a.get('title')} ({a.get('id')})")
        if data.get("omitted"):
            lines.append(f"... and {data['omitted']} more")
        return f"[Flightdeck] {count} alerts", "\n".join(lines) + "\n"
    a = data.get("alert", {})
    event = str(doc.get("type", "")).removeprefix("alert.")
    prefix = {"escalated": "ESCALATED ", "renotified": "REMINDER "}.get(event, "")
    subject = f"[{str(a.get('severity', '')).upper()}] {prefix}{a.get('title', '')}"
    figures = a.get("figures") or {}
    lines = [
        a.get("message") or a.get("title", ""),
        "",
        f"Recommended action: {a.get('action')}" if a.get("action") else "",
        "",
        *(f"  {k}: {v:g}" for k, v in sorted(figures.items())),
        "",
        f"Site {a.get('site')}, subject {a.get('subject')}, rule {a.get('rule')}",
        f"Raised {a.get('raised_at')}; {event} {doc.get('timestamp')} ({data.get('reason', '')})",
        f"Alert id {a.get('id')}",
    ]
    return " ".join(subject.split())[:250], "\n".join(lines) + "\n"


class SmtpSink:
    channel = "email"

    def __init__(self, settings: EmailSettings, *, tls: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.tls = tls or ssl.create_default_context()

    def message(self, n: Notification) -> EmailMessage:
        subject, body = render(n)
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = n.recipient
        msg["Subject"] = subject
        msg["Date"] = formatdate(n.created_ms / 1000, usegmt=True)
        msg["Message-ID"] = f"<{n.id}@flightdeck>"
        msg["X-Flightdeck-Alert"] = n.alert_id or ""
        msg.set_content(body)
        return msg

    async def send(self, n: Notification) -> None:
        msg = self.message(n)
        await asyncio.to_thread(self._send, msg, n.recipient)

    def _send(self, msg: EmailMessage, recipient: str) -> None:
        s = self.settings
        try:
            smtp: smtplib.SMTP
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=self.tls)
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=self.tls)
                if s.username is not None:
                    password = s.password.get_secret_value() if s.password else ""
                    smtp.login(s.username, password)
                smtp.send_message(msg, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise self._error(recipient, str(exc), codes[0] if codes else 550) from exc
        except smtplib.SMTPResponseException as exc:
            raise self._error(recipient, str(exc), exc.smtp_code) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"SMTP {s.host}:{s.port}: {exc}", channel=self.channel, recipient=recipient,
                retryable=True,
            ) from exc  # fmt: skip

    def _error(self, recipient: str, message: str, code: int) -> DeliveryError:
        return DeliveryError(
            f"SMTP {code}: {message}", channel=self.channel, recipient=recipient,
            retryable=not 500 <= code < 600, status=code,
        )  # fmt: skip
