"""Configuration of the agent's machinery: broker, batching, spool, delivery, status, clock."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, FilePath, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from .config_types import IdStr, Model, Port, bounds_error

_DAY_S = 86_400


class TlsConfig(Model):
    """TLS towards the broker; without ``ca_file`` the system trust store is used."""

    ca_file: FilePath | None = None
    cert_file: FilePath | None = None  # client certificate (with key_file), for mutual TLS
    key_file: FilePath | None = None

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise PydanticCustomError(
                "tls_pair", "cert_file and key_file must be given together (or neither)"
            )
        return self


class BrokerConfig(Model):
    host: str = Field(default="localhost", min_length=1)
    port: Port = 1883
    # MQTT 5 by default; "3.1.1" for brokers that do not speak 5 (no PUBACK reason codes).
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    client_id: IdStr | None = None  # default: the gateway id (see AgentConfig.client_id)
    # QoS 1 messages in flight (sent, not yet PUBACKed); paho's default is 20.
    max_inflight: int = Field(default=20, ge=1, le=65535)
    # paho's outgoing queue (in flight + waiting), memory only. Kept well under the 16-bit
    # message-id space: past ~65.5k unacked messages paho refuses publishes anyway.
    max_queued: int = Field(default=1000, ge=1, le=65000)
    reconnect_min_s: int = Field(default=1, ge=1, le=3600)
    reconnect_max_s: int = Field(default=60, ge=1, le=3600)

    @model_validator(mode="after")
    def _reconnect_bounds(self) -> Self:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise PydanticCustomError(
                "reconnect_bounds", "reconnect_max_s must be >= reconnect_min_s"
            )
        return self


class BatchingConfig(Model):
    """A batch is closed when it holds ``max_readings`` or its oldest is ``max_age_s`` old."""

    max_readings: int = Field(default=100, ge=1, le=10_000)
    max_age_s: float = Field(default=5.0, gt=0, le=3600)


class DropPolicy(StrEnum):
    """What a full spool gives up: its oldest batches (default) or the newest readings."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


class SpoolConfig(Model):
    """The SQLite spool every reading is committed to before it is published.

    ``max_bytes`` bounds the stored readings (the file is larger by SQLite's page overhead,
    about 10%, plus its write-ahead log); ``max_age_s`` drops what the cloud would refuse as
    too old anyway (it accepts 35 days). Every reading dropped is counted per signal.
    """

    path: Path | None = None  # default: var/edge/{gateway}/spool.db (see AgentConfig)
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=4096)
    max_age_s: float = Field(default=30 * _DAY_S, gt=0, le=35 * _DAY_S)
    policy: DropPolicy = DropPolicy.DROP_OLDEST
    expire_check_s: float = Field(default=10.0, gt=0, le=3600)
    check_on_start: bool = True  # PRAGMA quick_check; a corrupt file is moved aside


class DeliveryConfig(Model):
    """How spooled batches go out: live first, the backlog under a rate limit.

    ``window`` batches may be handed to paho without a PUBACK. A stream whose cloud ack has
    not moved for ``resend_after_s`` while the cloud is seen acking is resent from its first
    un-acked batch; the wait doubles on each resend up to ``resend_max_s``.
    """

    window: int = Field(default=50, ge=1, le=10_000)
    catchup_readings_per_s: float = Field(default=5_000.0, gt=0, allow_inf_nan=False)
    catchup_burst_readings: int = Field(default=10_000, ge=1)
    live_queue_max: int = Field(default=200, ge=1, le=100_000)
    resend_after_s: float = Field(default=30.0, gt=0, le=86_400)
    resend_max_s: float = Field(default=900.0, gt=0, le=86_400)
    birth_min_interval_s: float = Field(default=10.0, ge=0, le=3600)
    # A graceful stop waits this long for the cloud to ack what was sent (less to replay).
    stop_ack_wait_s: float = Field(default=3.0, ge=0, le=300)

    @model_validator(mode="after")
    def _resend_bounds(self) -> Self:
        if self.resend_max_s < self.resend_after_s:
            raise bounds_error("resend_max_s must be >= resend_after_s")
        return self


class StatusConfig(Model):
    """The local status page (``GET /``, ``/status.json``; alert acks by ``POST``).

    Bound to localhost by default. ``ack_token``, when set, must accompany every
    acknowledgement (for a page exposed on the plant network).
    """

    enabled: bool = True
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8787, ge=0, le=65535)  # 0: any free port (tests)
    ack_token: SecretStr | None = None


class ClockConfig(Model):
    """Wall-clock checks: a Raspberry Pi has no real-time clock."""

    step_threshold_ms: int = Field(default=1000, ge=1)
    # Readings stamped before this are UNCERTAIN: the clock was evidently never set.
    min_valid_ms: int = Field(default=1_704_067_200_000, ge=0)  # 2024-01-01T00:00:00Z
