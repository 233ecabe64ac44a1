"""Configuration of the agent's machinery: broker, batching, spool, delivery, status, clock."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from shared.messages import Severity

from .config_types import FilePath, FiniteFloat, IdStr, Model, Port, Problems, Secret

_DAY_S = 86_400


def _range(lo: float, hi: float | None = None, *, gt: bool = False) -> Meta:
    """``lo <= x <= hi`` (``lo < x`` with ``gt``)."""
    return Meta(gt=lo, le=hi) if gt else Meta(ge=lo, le=hi)


class TlsConfig(Model, frozen=True, kw_only=True):
    """TLS towards the broker; without ``ca_file`` the system trust store is used."""

    ca_file: FilePath | None = None
    cert_file: FilePath | None = None  # client certificate (with key_file), for mutual TLS
    key_file: FilePath | None = None

    def problems(self) -> Problems:
        if (self.cert_file is None) != (self.key_file is None):
            return [((), "cert_file and key_file must be given together (or neither)")]
        return []


#: MQTT protocol versions: "auto" tries 5 and falls back to 3.1.1 when the broker refuses it.
MqttProtocol = Literal["auto", "5", "3.1.1"]


class BrokerConfig(Model, frozen=True, kw_only=True):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"password"})

    host: Annotated[str, Meta(min_length=1)] = "localhost"
    port: Port = 1883
    # "auto" (default): MQTT 5, and 3.1.1 for the rest of the run if the broker refuses 5
    # (see edge_agent.protocol). "5" or "3.1.1" pin the version.
    protocol: MqttProtocol = "auto"
    username: str | None = None
    password: Secret | None = None
    tls: TlsConfig | None = None
    keepalive_s: Annotated[int, _range(5, 65535)] = 30
    client_id: IdStr | None = None  # default: the gateway id (see AgentConfig.client_id)
    # QoS 1 messages in flight (sent, not yet PUBACKed); paho's default is 20.
    max_inflight: Annotated[int, _range(1, 65535)] = 20
    # paho's outgoing queue (in flight + waiting), memory only. Kept well under the 16-bit
    # message-id space: past ~65.5k unacked messages paho refuses publishes anyway.
    max_queued: Annotated[int, _range(1, 65000)] = 1000
    reconnect_min_s: Annotated[int, _range(1, 3600)] = 1
    reconnect_max_s: Annotated[int, _range(1, 3600)] = 60

    def problems(self) -> Problems:
        if self.reconnect_max_s < self.reconnect_min_s:
            return [(("reconnect_max_s",), "must be >= reconnect_min_s")]
        return []


class BatchingConfig(Model, frozen=True, kw_only=True):
    """A batch is closed when it holds ``max_readings`` or its oldest is ``max_age_s`` old."""

    max_readings: Annotated[int, _range(1, 10_000)] = 100
    max_age_s: Annotated[float, _range(0, 3600, gt=True)] = 5.0


class DropPolicy(StrEnum):
    """What a full spool gives up: its oldest batches (default) or the newest readings."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


class SpoolConfig(Model, frozen=True, kw_only=True):
    """The SQLite spool every reading is committed to before it is published.

    ``max_bytes`` bounds the stored readings (the file is larger by SQLite's page overhead,
    about 10%, plus its write-ahead log); ``max_age_s`` drops what the cloud would refuse as
    too old anyway (it accepts 35 days). Every reading dropped is counted per signal.
    """

    path: Path | None = None  # default: var/edge/{gateway}/spool.db (see AgentConfig)
    max_bytes: Annotated[int, Meta(ge=4096)] = 256 * 1024 * 1024
    max_age_s: Annotated[float, _range(0, 35 * _DAY_S, gt=True)] = 30.0 * _DAY_S
    policy: DropPolicy = DropPolicy.DROP_OLDEST
    expire_check_s: Annotated[float, _range(0, 3600, gt=True)] = 10.0
    check_on_start: bool = True  # PRAGMA quick_check; a corrupt file is moved aside


class DeliveryConfig(Model, frozen=True, kw_only=True):
    """How spooled batches go out: live first, the backlog under a rate limit.

    ``window`` batches may be handed to paho without a PUBACK. A stream whose cloud ack has
    not moved for ``resend_after_s`` while the cloud is seen acking is resent from its first
    un-acked batch; the wait doubles on each resend up to ``resend_max_s``.
    """

    window: Annotated[int, _range(1, 10_000)] = 50
    catchup_readings_per_s: Annotated[FiniteFloat, Meta(gt=0)] = 5_000.0
    catchup_burst_readings: Annotated[int, Meta(ge=1)] = 10_000
    live_queue_max: Annotated[int, _range(1, 100_000)] = 200
    resend_after_s: Annotated[float, _range(0, 86_400, gt=True)] = 30.0
    resend_max_s: Annotated[float, _range(0, 86_400, gt=True)] = 900.0
    birth_min_interval_s: Annotated[float, _range(0, 3600)] = 10.0
    # A graceful stop waits this long for the cloud to ack what was sent (less to replay).
    stop_ack_wait_s: Annotated[float, _range(0, 300)] = 3.0

    def problems(self) -> Problems:
        if self.resend_max_s < self.resend_after_s:
            return [(("resend_max_s",), "must be >= resend_after_s")]
        return []


class StatusConfig(Model, frozen=True, kw_only=True):
    """The local status page (``GET /``, ``/status.json``; alert acks by ``POST``).

    Bound to localhost by default. ``ack_token``, when set, must accompany every
    acknowledgement (for a page exposed on the plant network).
    """

    secret_fields: ClassVar[frozenset[str]] = frozenset({"ack_token"})

    enabled: bool = True
    host: Annotated[str, Meta(min_length=1)] = "127.0.0.1"
    port: Annotated[int, _range(0, 65535)] = 8787  # 0: any free port (tests)
    ack_token: Secret | None = None


class ClockConfig(Model, frozen=True, kw_only=True):
    """Wall-clock checks: a Raspberry Pi has no real-time clock."""

    step_threshold_ms: Annotated[int, Meta(ge=1)] = 1000
    # Readings stamped before this are UNCERTAIN: the clock was evidently never set.
    min_valid_ms: Annotated[int, Meta(ge=0)] = 1_704_067_200_000  # 2024-01-01T00:00:00Z


class AndonConfig(Model, frozen=True, kw_only=True):
    """An andon light on a Modbus coil: ON while the agent holds an active alert of one of
    ``severities`` (with ``unacknowledged_only``: an active one nobody acknowledged yet), OFF
    otherwise. The coil is written on every change, retried every ``retry_s`` after a failure
    and rewritten every ``refresh_s`` (a PLC that restarted gets its light back).

    The device: ``source`` names a Modbus source (its host, port, unit id and timeout), or
    ``host``/``port``/``unit_id`` give one that is only an andon.
    """

    source: IdStr | None = None
    host: Annotated[str, Meta(min_length=1)] | None = None
    port: Port = 502
    unit_id: Annotated[int, _range(0, 255)] | None = None  # default: the source's, else 1
    coil: Annotated[int, _range(0, 65535)]
    severities: Annotated[list[Severity], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [Severity.CRITICAL]
    )
    unacknowledged_only: bool = False
    timeout_s: Annotated[float, _range(0, 60, gt=True)] = 1.0
    retry_s: Annotated[float, _range(0, 3600, gt=True)] = 2.0
    refresh_s: Annotated[float, _range(0, 86_400, gt=True)] = 30.0

    def problems(self) -> Problems:
        if (self.source is None) == (self.host is None):
            return [((), "give either source (a modbus source's id) or host, not both")]
        return []
