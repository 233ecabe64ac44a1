"""Webhooks signed per Standard Webhooks, a verifier for receivers, and the sending sink.

Headers: ``webhook-id`` (the notification id, the same on every retry so receivers can
de-duplicate), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``: space-separated
``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one per secret, so during a key rotation
receivers holding either the old or the new secret verify. Secrets are ``whsec_`` + base64.
The verifier refuses timestamps more than 5 minutes off (replays) and compares in constant
time. The sink never follows redirects and connects only through the SSRF guard.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from cloud_service.alerts.errors import AddressRefused, DeliveryError, SignatureError
from cloud_service.alerts.outbox import Notification
from cloud_service.alerts.settings import WebhookEndpoint, WebhookSettings
from cloud_service.alerts.ssrf import AddressPolicy, GuardedTransport, Resolver, system_resolver

PREFIX: Final = "whsec_"
TOLERANCE_S: Final = 300
_RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise ValueError("webhook secrets start with 'whsec_'")
    return base64.b64decode(secret[len(PREFIX) :], validate=True)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_),
    }


class Verifier:
    """For receivers (and our tests): accepts a body signed with any of ``secrets``."""

    def __init__(self, secrets_: Sequence[str], tolerance_s: int = TOLERANCE_S) -> None:
        self.keys = [secret_key(s) for s in secrets_]
        self.tolerance_s = tolerance_s

    def verify(self, headers: Mapping[str, str], body: bytes, now_s: float | None = None) -> str:
        """Return the ``webhook-id``, or raise :class:`SignatureError`."""
        h = {k.lower(): v for k, v in headers.items()}
        msg_id, ts_text, sigs = (
            h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
        )  # fmt: skip
        if not (msg_id and ts_text and sigs):
            raise SignatureError("missing_headers", "webhook-id, -timestamp, -signature required")
        try:
            ts = int(ts_text)
        except ValueError:
            raise SignatureError("bad_timestamp", "webhook-timestamp is not an integer") from None
        now = time.time() if now_s is None else now_s
        if abs(now - ts) > self.tolerance_s:
            raise SignatureError("stale", f"timestamp {ts} is more than {self.tolerance_s} s off")
        content = f"{msg_id}.{ts}.".encode() + body
        expected = [
            base64.b64encode(hmac.new(k, content, hashlib.sha256).digest()) for k in self.keys
        ]
        for item in sigs.split():
            version, _, sig = item.partition(",")
            if version != "v1":
                continue
            if any(hmac.compare_digest(sig.encode(), e) for e in expected):
                return msg_id
        raise SignatureError("no_match", "no signature matches a known secret")


class WebhookSink:
    """The ``webhook`` channel: recipient = endpoint name, payload = the JSON event."""

    channel = "webhook"

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        resolver: Resolver = system_resolver,
        clock: Callable[[], float] = time.time,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoints: dict[str, WebhookEndpoint] = {e.name: e for e in settings.endpoints}
        self.clock = clock
        transport = GuardedTransport(
            AddressPolicy(tuple(settings.allow_networks)), resolver=resolver, inner=inner
        )
        self.client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            timeout=settings.timeout_s,
            headers={"user-agent": settings.user_agent},
        )

    async def send(self, n: Notification) -> None:
        ep = self.endpoints.get(n.recipient)
        if ep is None:
            raise self._error(n, "unknown webhook endpoint", retryable=False)
        keys = [s.get_secret_value() for s in ep.secrets]
        headers = signed_headers(keys, n.id, int(self.clock()), n.payload)
        headers["content-type"] = "application/json"
        try:
            response = await self.client.post(ep.url, content=n.payload, headers=headers)
        except AddressRefused as exc:
            raise AddressRefused(
                str(exc), recipient=ep.name, host=exc.host, address=exc.address
            ) from None
        except DeliveryError as exc:
            raise self._error(n, str(exc), retryable=exc.retryable) from exc
        except httpx.TransportError as exc:  # connect, read, timeouts, protocol errors
            raise self._error(n, f"{type(exc).__name__}: {exc}", retryable=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            where = response.headers.get("location", "?")
            raise self._error(
                n, f"redirect to {where} not followed", retryable=False, status=status
            )
        raise self._error(
            n, f"HTTP {status}", retryable=status in _RETRYABLE_STATUS, status=status,
            retry_after_s=_retry_after(response.headers.get("retry-after"), self.clock()),
        )  # fmt: skip

    def _error(
        self,
        n: Notification,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> DeliveryError:
        return DeliveryError(
            message, channel=self.channel, recipient=n.recipient, retryable=retryable,
            status=status, retry_after_s=retry_after_s,
        )  # fmt: skip

    async def aclose(self) -> None:
        await self.client.aclose()


def _retry_after(value: str | None, now_s: float) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - now_s, 0.0)
    except (TypeError, ValueError):
        return None
