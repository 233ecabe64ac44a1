"""``AlertSettings``: everything the alert subsystem is configured with, passed in by the app.

A pydantic model (no environment access here): the cloud settings hang it under ``[alerts]``
so the usual TOML file + ``FLIGHTDECK_CLOUD_ALERTS__*`` overrides apply to it like the rest.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, SecretStr, field_validator

from shared.ids import check_id
from shared.messages import Severity


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LifecycleSettings(_Section):
    """Timers of the ISA-18.2 lifecycle that rules do not set themselves."""

    #: Re-send an active, unacknowledged alert this often (None: never).
    renotify_every_s: float | None = Field(default=3600.0, gt=0)
    #: Escalation level n+1 is reached this long after raising while still unacknowledged.
    escalate_after_s: tuple[Annotated[float, Field(gt=0)], ...] = (1800.0,)
    #: Shelving is always time-limited (ISA-18.2): longer requests are refused.
    max_shelve_s: float = Field(default=8 * 3600.0, gt=0)

    @field_validator("escalate_after_s")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if list(value) != sorted(set(value)):
            raise ValueError("escalation delays must be strictly increasing")
        return value


class ChannelPolicy(_Section):
    """Rate limits, storm threshold and give-up time of one delivery channel."""

    rate_per_min: float = Field(default=600.0, gt=0)  # the whole channel
    burst: int = Field(default=100, ge=1)
    recipient_rate_per_min: float = Field(default=60.0, gt=0)  # one recipient of the channel
    recipient_burst: int = Field(default=20, ge=1)
    #: More notifications than this due at once for one recipient become one summary
    #: (None: never summarise, e.g. MQTT, where every alert's retained state matters).
    storm_threshold: int | None = Field(default=10, ge=2)
    ttl_s: float = Field(
        default=24 * 3600.0, gt=0
    )  # undelivered after this: expired, counted, logged


def _default_channels() -> dict[str, ChannelPolicy]:
    return {
        "mqtt": ChannelPolicy(
            rate_per_min=6000, burst=1000, recipient_rate_per_min=600, recipient_burst=200,
            storm_threshold=None, ttl_s=7 * 86_400.0,
        ),
        "webhook": ChannelPolicy(storm_threshold=20),
        "email": ChannelPolicy(
            rate_per_min=60, burst=20, recipient_rate_per_min=6, recipient_burst=3,
            storm_threshold=3,
        ),
    }  # fmt: skip


class OutboxSettings(_Section):
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_cap_s: float = Field(default=600.0, gt=0)
    jitter: float = Field(default=0.2, ge=0, le=1)  # fraction of the delay drawn at random
    lease_s: float = Field(
        default=60.0, gt=0
    )  # a claimed notification is retried after this if we die
    batch: int = Field(default=100, ge=1)
    concurrency: int = Field(default=8, ge=1)
    channels: dict[str, ChannelPolicy] = Field(default_factory=_default_channels)

    def policy(self, channel: str) -> ChannelPolicy:
        return self.channels.get(channel) or ChannelPolicy()


def _check_secret(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    if not text.startswith("whsec_"):
        raise ValueError("webhook secrets start with 'whsec_' (Standard Webhooks)")
    try:
        key = base64.b64decode(text[6:], validate=True)
    except ValueError:
        raise ValueError("webhook secret is not base64 after 'whsec_'") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("webhook secret keys are 24 to 64 bytes")
    return value


class RecipientScope(_Section):
    min_severity: Severity = Severity.INFO
    sites: frozenset[str] = frozenset()  # empty: every site

    @field_validator("sites")
    @classmethod
    def _sites(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(check_id(s, "site") for s in value)


class WebhookEndpoint(RecipientScope):
    name: str
    url: str
    #: Newest first; every one signs during a key rotation so receivers can switch over.
    secrets: list[SecretStr] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_id(value, "webhook endpoint")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("webhook URLs are http:// or https://")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        return [_check_secret(s) for s in value]


class WebhookSettings(_Section):
    endpoints: list[WebhookEndpoint] = []
    timeout_s: float = Field(default=10.0, gt=0)
    #: Networks the SSRF guard lets through although they are not public (explicit opt-in).
    allow_networks: list[IPvAnyNetwork] = []
    user_agent: str = "flightdeck-alerts/1"


class EmailRecipient(RecipientScope):
    address: str
    #: Only alerts escalated to at least this level reach this recipient (0: from the start).
    min_escalation: int = Field(default=0, ge=0)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" not in value or any(c in value for c in "\r\n,;<> \t"):
            raise ValueError("not a plain e-mail address")
        return value


class EmailSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "flightdeck@localhost"
    recipients: list[EmailRecipient] = []
    timeout_s: float = Field(default=30.0, gt=0)


class MqttAlertSettings(_Section):
    """Alert-specific MQTT options; the broker connection is the cloud's ``[mqtt]``."""

    enabled: bool = True
    #: None: the ingest client id + "-alerts", so every cloud worker has its own session.
    client_id: str | None = None

    @field_validator("client_id")
    @classmethod
    def _cid(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "MQTT client")


class StreamSettings(_Section):
    buffer_size: int = Field(default=1000, ge=1)  # events kept in memory for Last-Event-ID resume
    client_queue: int = Field(
        default=1000, ge=1
    )  # a client further behind is disconnected (resumes)
    heartbeat_s: float = Field(default=15.0, gt=0)
    retry_ms: int = Field(default=2000, ge=0)  # the reconnect delay told to EventSource clients


class AlertSettings(_Section):
    rules_file: Path | None = None  # TOML rules for a first start (the metadata store later)
    lifecycle: LifecycleSettings = LifecycleSettings()
    outbox: OutboxSettings = OutboxSettings()
    webhooks: WebhookSettings = WebhookSettings()
    email: EmailSettings | None = None  # None: no e-mail channel
    mqtt: MqttAlertSettings = MqttAlertSettings()
    stream: StreamSettings = StreamSettings()
