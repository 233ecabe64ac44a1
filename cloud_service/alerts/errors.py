"""Errors of the alert subsystem: few classes, structured fields a caller can act on.

``DeliveryError.retryable`` is what the outbox reads to choose between a retry with back-off
and giving a notification up; every sink maps its transport's failures onto it.
"""

from __future__ import annotations

from cloud_service.errors import CloudError


class AlertError(CloudError):
    """Base of the alert subsystem's errors."""


class RuleError(AlertError):
    """A rule file or rule definition that cannot be used; ``problems`` are (path, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"invalid alert rules in {source}:\n{lines}")


class LifecycleError(AlertError):
    """An operator action the lifecycle refuses (unknown alert, shelving too long, ...)."""

    def __init__(self, message: str, *, alert_id: str, action: str) -> None:
        super().__init__(message)
        self.alert_id = alert_id
        self.action = action


class UnknownAlertError(LifecycleError):
    """No open alert has this id (it may have closed already)."""


class DeliveryError(AlertError):
    """One attempt to deliver a notification failed.

    ``retryable`` false means trying again cannot help (refused address, 4xx, bad recipient):
    the outbox marks the notification failed instead of retrying it until it expires.
    ``retry_after_s`` carries a server's hint (HTTP ``Retry-After``, SMTP 4xx) when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        channel: str,
        recipient: str,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.channel = channel
        self.recipient = recipient
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


class AddressRefused(DeliveryError):
    """The SSRF guard refused a destination; ``address`` is the resolved IP (or the host)."""

    def __init__(self, message: str, *, recipient: str, host: str, address: str) -> None:
        super().__init__(message, channel="webhook", recipient=recipient, retryable=False)
        self.host = host
        self.address = address


class SignatureError(AlertError):
    """A webhook signature that does not verify; ``reason`` is a stable code for logs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
