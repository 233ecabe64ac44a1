"""Cloud service settings: a TOML file, then ``FLIGHTDECK_CLOUD_*`` environment overrides.

Built once by :func:`load_settings` and passed in; nothing else reads the environment.
Example: ``FLIGHTDECK_CLOUD_INFLUX__URL=http://db:8086`` overrides ``[influx] url``.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from cloud_service.alerts.settings import AlertSettings
from cloud_service.api.settings import ApiSettings
from cloud_service.errors import ConfigError
from cloud_service.live.settings import LiveSettings
from shared.codec import MAX_PAYLOAD_BYTES, MAX_READINGS, Limits
from shared.ids import check_id
from shared.topics import DEFAULT_PREFIX, TopicScheme


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None  # TLS on when set
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str = "flightdeck-cloud-ingest-1"
    share_group: str = "ingest"  # MQTT 5 shared subscription group: N workers split the load
    session_expiry_s: int = Field(7 * 86_400, ge=0)  # broker keeps our queue this long offline
    receive_maximum: int = Field(2_000, ge=1, le=65_535)  # un-acked messages in flight to us
    keepalive_s: int = Field(30, ge=5)
    topic_prefix: str = DEFAULT_PREFIX

    @field_validator("client_id", "share_group")
    @classmethod
    def _ids(cls, value: str) -> str:
        return check_id(value, "MQTT client or group")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        TopicScheme(value)
        return value


class InfluxSettingsModel(_Section):
    url: str = "http://127.0.0.1:8086"
    database: str = "flightdeck"
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None  # InfluxDB 2.x/3.x v1-compatible endpoints
    timeout_s: float = Field(10.0, gt=0)
    gzip: bool = True  # compress write bodies (off pays on loopback, where CPU is the limit)
    #: Retries inside one store call; ingest then retries forever on its own, reporting the
    #: outage after the first failed call, so keep this small.
    max_retries: int = Field(2, ge=0)

    @field_validator("database")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_id(value, "database")


class IngestSettings(_Section):
    max_points: int = Field(10_000, ge=1)  # flush a write at this many points...
    max_age_s: float = Field(0.2, gt=0)  # ... or when the oldest waiting message is this old
    max_payload_bytes: int = Field(MAX_PAYLOAD_BYTES, ge=1_024)  # the edge batches within these
    max_readings: int = Field(MAX_READINGS, ge=1)
    max_past_s: float = Field(35 * 86_400, gt=0)
    max_future_s: float = Field(300, ge=0)
    #: Writes to the time-series store in flight at once: one leaves influxd idle between
    #: requests (field notes); acks still go out in arrival order.
    writes_in_flight: int = Field(2, ge=1, le=8)
    #: At a stop (SIGTERM), how long writes already in flight may take to finish and be
    #: acked before they are cancelled (un-acked: redelivered). Under Docker's default 10 s
    #: grace period before SIGKILL.
    shutdown_timeout_s: float = Field(8.0, ge=0)
    #: Back-off between failed writes (store or metadata down): stop acking, retry, recover.
    retry_base_s: float = Field(0.2, gt=0)
    retry_cap_s: float = Field(5.0, gt=0)
    #: Workers of one share group tell each other which batches they stored, so each can
    #: ack the contiguous seq although the broker splits a gateway's batches between them.
    peer_reports: bool = True
    #: A status line in the log this often (messages, points, un-acked, back-pressure).
    status_log_s: float = Field(60.0, gt=0)
    #: Deprecated and ignored: dead letters live in the metadata store (``[metadata]``).
    dead_letter_file: Path | None = None
    dead_letter_max_bytes: int | None = None

    def limits(self) -> Limits:
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_readings=self.max_readings,
            max_past_ms=int(self.max_past_s * 1000),
            max_future_ms=int(self.max_future_s * 1000),
        )


class MetadataSettings(_Section):
    """The metadata store (registry, dead letters, sequence state): an SQLAlchemy async URL."""

    url: SecretStr = SecretStr("sqlite+aiosqlite:///var/flightdeck.sqlite")
    #: SQLite only. FULL syncs every commit; commits are batched (one per write cycle), so it
    #: is affordable, and a dead letter must survive a power cut once its message is acked.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "FULL"
    dead_letter_max_rows: int = Field(100_000, ge=10)
    dead_letter_max_bytes: int = Field(256 * 1024 * 1024, ge=64 * 1024)
    #: Raw bytes kept per letter; a longer payload (``too_large``) keeps its head and size.
    dead_letter_max_raw_bytes: int = Field(1_048_576, ge=1024)
    #: How often sequence-tracker state, health status changes and gateway last-seen times
    #: are saved; every signal's last-seen time is saved less often (one row per signal).
    flush_interval_s: float = Field(2.0, gt=0)
    activity_interval_s: float = Field(30.0, gt=0)


class HealthSettings(_Section):
    """Signal freshness: stale after ``stale_after_periods`` × the signal's expected period."""

    stale_after_periods: float = Field(3.0, gt=1)
    check_interval_s: float = Field(1.0, gt=0)


class MetricsSettings(_Section):
    """Prometheus exposition over HTTP; off unless ``port`` is set (0 picks a free port)."""

    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)


class CloudSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FLIGHTDECK_CLOUD_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mqtt: Annotated[MqttSettings, Field(default_factory=MqttSettings)]
    influx: Annotated[InfluxSettingsModel, Field(default_factory=InfluxSettingsModel)]
    ingest: Annotated[IngestSettings, Field(default_factory=IngestSettings)]
    metadata: Annotated[MetadataSettings, Field(default_factory=MetadataSettings)]
    health: Annotated[HealthSettings, Field(default_factory=HealthSettings)]
    metrics: Annotated[MetricsSettings, Field(default_factory=MetricsSettings)]
    live: Annotated[LiveSettings, Field(default_factory=LiveSettings)]
    alerts: Annotated[AlertSettings, Field(default_factory=AlertSettings)]
    api: Annotated[ApiSettings, Field(default_factory=ApiSettings)]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file (passed in as init values).
        return (env_settings, init_settings)


def load_settings(path: Path | None = None, **overrides: Any) -> CloudSettings:
    """Read ``path`` (optional) and the environment; raise :class:`ConfigError` by field."""
    source = str(path) if path else "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(source, [("(file)", exc.strerror or str(exc))]) from None
        except UnicodeDecodeError as exc:
            problem = f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
            raise ConfigError(source, [("(file)", problem)]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, [("(syntax)", str(exc))]) from None
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    try:
        return CloudSettings(**data)
    except ValidationError as exc:
        problems = [(".".join(map(str, e["loc"])) or "(root)", e["msg"]) for e in exc.errors()]
        raise ConfigError(source, problems) from None
    except SettingsError as exc:  # an environment override pydantic-settings cannot parse
        raise ConfigError("the environment", [_env_problem(exc)]) from None


_SETTINGS_FIELD = re.compile(r'field "(?P<field>[^"]+)"')


def _env_problem(exc: SettingsError) -> tuple[str, str]:
    """``FLIGHTDECK_CLOUD_MQTT='{"host": '`` -> ``("mqtt", "FLIGHTDECK_CLOUD_MQTT is ...")``."""
    match = _SETTINGS_FIELD.search(str(exc))
    field = match["field"] if match else "(environment)"
    variable = f"{CloudSettings.model_config.get('env_prefix', '')}{field.upper()}"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, json.JSONDecodeError):
        return field, f"{variable} is not valid JSON: {cause}"
    return field, f"{variable} cannot be parsed: {cause or exc}"
