"""Gateway configuration: one TOML file per gateway, validated into frozen pydantic models.

Environment variables override the file: ``FLIGHTDECK_EDGE_`` + the field path in upper case,
nested levels joined by ``__``, e.g. ``FLIGHTDECK_EDGE_BROKER__HOST``,
``FLIGHTDECK_EDGE_BROKER__PASSWORD``, ``FLIGHTDECK_EDGE_BATCHING__MAX_AGE_S``. Lists
(``sources``, ``signals``) can only be replaced whole, as JSON. The environment is read in
:func:`load_config` and nowhere else; building :class:`AgentConfig` directly never reads it.

Example (every key but ``site``, ``gateway``, the sources' ``id``/``host`` and the signals'
``id``/``source``/``address``/``kind`` has a default)::

    site = "plant-01"
    gateway = "gw-01"
    topic_prefix = "flightdeck/v1"

    [broker]
    host = "mqtt.example.net"
    port = 8883
    username = "gw-01"
    password = "change-me"          # better: FLIGHTDECK_EDGE_BROKER__PASSWORD
    keepalive_s = 30
    max_inflight = 20
    max_queued = 1000

    [broker.tls]
    ca_file = "/etc/flightdeck/ca.pem"
    cert_file = "/etc/flightdeck/gw-01.pem"
    key_file = "/etc/flightdeck/gw-01.key"

    [batching]
    max_readings = 100
    max_age_s = 5.0

    [[sources]]
    type = "modbus"
    id = "plc1"
    host = "192.168.10.20"
    port = 502
    unit_id = 1
    timeout_s = 1.0

    [[signals]]
    id = "stock.sku-001"
    source = "plc1"
    address = 0
    register_type = "holding"
    data_type = "float32"
    word_order = "big"
    scale = 1.0
    offset = 0.0
    kind = "stock_level"
    unit = "pcs"
    sku = "SKU-001"
    location = "WH1"
    period_s = 5.0
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    FiniteFloat,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.ids import ID_MAX_LENGTH, InvalidIdError, is_valid_id
from shared.messages import SignalKind
from shared.topics import DEFAULT_PREFIX, TopicScheme

from .errors import ConfigError, ConfigIssue

ENV_PREFIX: Final = "FLIGHTDECK_EDGE_"
ENV_NESTED_DELIMITER: Final = "__"

_ID_RULE: Final = (
    f"ids are 1-{ID_MAX_LENGTH} characters of A-Z a-z 0-9 _ . : - starting with a letter or "
    "digit (no '/', '+', '#', spaces)"
)


def _check_id(value: str) -> str:
    if not is_valid_id(value):
        raise PydanticCustomError("invalid_id", "{detail}", {"detail": f"{value!r}: {_ID_RULE}"})
    return value


def _check_prefix(value: str) -> str:
    try:
        TopicScheme(value)
    except InvalidIdError as exc:
        raise PydanticCustomError(
            "invalid_topic_prefix",
            "{detail}",
            {"detail": f"{value!r}: every '/'-separated level must be an id; {_ID_RULE}"},
        ) from exc
    return value


#: An identifier under the shared rule (:mod:`shared.ids`): safe in topics, tags and queries.
IdStr = Annotated[str, AfterValidator(_check_id)]
#: Printable text without control characters, as the wire contract's ``Text``.
Text = Annotated[str, Field(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class RegisterType(StrEnum):
    HOLDING = "holding"  # function code 3
    INPUT = "input"  # function code 4


class DataType(StrEnum):
    FLOAT32 = "float32"  # IEEE 754 single, 2 registers
    UINT32 = "uint32"  # 2 registers
    INT16 = "int16"  # 1 register, two's complement
    UINT16 = "uint16"  # 1 register


#: Registers per value of each data type.
REGISTER_WIDTH: Final[Mapping[DataType, int]] = {
    DataType.FLOAT32: 2,
    DataType.UINT32: 2,
    DataType.INT16: 1,
    DataType.UINT16: 1,
}


class WordOrder(StrEnum):
    """Order of the 16-bit words of a 32-bit value; bytes within a word are always big-endian."""

    BIG = "big"  # most significant word first ("ABCD"), the Modbus convention
    LITTLE = "little"  # least significant word first ("CDAB"), common on some PLCs


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Model):
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


class BrokerConfig(_Model):
    host: str = Field(default="localhost", min_length=1)
    port: Port = 1883
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


class BatchingConfig(_Model):
    """A batch is published when it holds ``max_readings`` or its oldest is ``max_age_s`` old."""

    max_readings: int = Field(default=100, ge=1, le=10_000)
    max_age_s: float = Field(default=5.0, gt=0, le=3600)


class ModbusSourceConfig(_Model):
    """A Modbus TCP device. Adjacent registers are read in one request (up to
    ``max_block_registers``; ``max_gap`` unused registers may be read to join two blocks)."""

    type: Literal["modbus"]
    id: IdStr
    host: str = Field(min_length=1)
    port: Port = 502
    unit_id: int = Field(default=1, ge=0, le=255)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)  # per request, after the first attempt
    reconnect_min_s: float = Field(default=0.5, gt=0, le=3600)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    max_block_registers: int = Field(default=125, ge=2, le=125)  # 125: the FC 3/4 limit
    max_gap: int = Field(default=0, ge=0, le=123)

    @model_validator(mode="after")
    def _reconnect_bounds(self) -> Self:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise PydanticCustomError(
                "reconnect_bounds", "reconnect_max_s must be >= reconnect_min_s"
            )
        return self


#: Every kind of source, told apart by ``type``. Later issues add OPC UA and MES sources here.
SourceConfig = Annotated[ModbusSourceConfig, Field(discriminator="type")]
SOURCE_TYPES: Final = frozenset({"modbus"})


class SignalConfig(_Model):
    """One measured quantity: where a source finds it, how to scale it, what it means.

    The value published is ``raw * scale + offset``.
    """

    id: IdStr
    source: IdStr
    address: int | None = Field(default=None, ge=0, le=65535)  # required by Modbus sources
    register_type: RegisterType = RegisterType.HOLDING
    data_type: DataType = DataType.FLOAT32
    word_order: WordOrder = WordOrder.BIG
    scale: FiniteFloat = 1.0
    offset: FiniteFloat = 0.0
    kind: SignalKind
    unit: Text = ""
    sku: IdStr | None = None
    location: IdStr | None = None
    line: IdStr | None = None
    period_s: float = Field(default=60.0, gt=0, le=86_400 * 366)
    description: Text = ""


class AgentConfig(_Model):
    """Everything one gateway's agent needs. Frozen; build it with :func:`load_config`."""

    site: IdStr
    gateway: IdStr
    topic_prefix: Annotated[str, AfterValidator(_check_prefix)] = DEFAULT_PREFIX
    broker: BrokerConfig = BrokerConfig()
    batching: BatchingConfig = BatchingConfig()
    sources: list[SourceConfig] = Field(min_length=1)
    signals: list[SignalConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_references(self) -> Self:
        issues = _cross_reference_issues(self)
        if issues:
            raise PydanticCustomError(
                "config_consistency",
                "{summary}",
                {
                    "summary": "; ".join(f"{_format_loc(loc)}: {msg}" for loc, msg in issues),
                    "issues": tuple(issues),
                },
            )
        return self

    @property
    def client_id(self) -> str:
        return self.broker.client_id or self.gateway

    @property
    def topics(self) -> TopicScheme:
        return TopicScheme(self.topic_prefix)

    def signals_of(self, source_id: str) -> list[SignalConfig]:
        return [s for s in self.signals if s.source == source_id]

    def config_hash(self) -> str:
        """A stable sha256 (hex) of the normalised config, announced in the birth message.

        Normalised: defaults filled in, keys sorted, so a file that spells out a default hashes
        like one that omits it. The broker password is left out: the hash is published.
        """
        data = self.model_dump(mode="json", exclude={"broker": {"password"}})
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _uses_registers(source: SourceConfig) -> bool:
    """Whether the source addresses signals by register (``address``, ``data_type``...)."""
    return source.type == "modbus"


def _cross_reference_issues(cfg: AgentConfig) -> list[tuple[tuple[str | int, ...], str]]:
    issues: list[tuple[tuple[str | int, ...], str]] = []
    sources: dict[str, SourceConfig] = {}
    for i, src in enumerate(cfg.sources):
        if src.id in sources:
            issues.append((("sources", i, "id"), f"duplicate source id {src.id!r}"))
        sources.setdefault(src.id, src)
    seen: set[str] = set()
    for i, sig in enumerate(cfg.signals):
        if sig.id in seen:
            issues.append((("signals", i, "id"), f"duplicate signal id {sig.id!r}"))
        seen.add(sig.id)
        owner = sources.get(sig.source)
        if owner is None:
            known = ", ".join(sorted(sources)) or "none"
            issues.append(
                (("signals", i, "source"), f"unknown source {sig.source!r} (defined: {known})")
            )
            continue
        if _uses_registers(owner):
            if sig.address is None:
                issues.append((("signals", i, "address"), "required for a modbus source"))
            elif sig.address + REGISTER_WIDTH[sig.data_type] - 1 > 65535:
                issues.append(
                    (
                        ("signals", i, "address"),
                        f"a {sig.data_type} at {sig.address} ends past 65535",
                    )
                )
    return issues


# -- loading --------------------------------------------------------------------------------


class _EnvOverlay(BaseSettings, AgentConfig):
    """AgentConfig with environment overrides on top of the values given (the TOML file)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: the environment over the file; no .env or secrets directory.
        return (env_settings, init_settings)


_TOML_POSITION = re.compile(r"\s*\(at line (?P<line>\d+), column (?P<column>\d+)\)\s*$")


def parse_toml(text: str, path: str | Path | None = None) -> dict[str, Any]:
    """Parse TOML, raising :class:`ConfigError` with the line and column of a syntax error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        if match is None:
            issue = ConfigIssue(None, f"TOML syntax error: {message}")
        else:
            issue = ConfigIssue(
                None,
                f"TOML syntax error: {message[: match.start()]}",
                line=int(match["line"]),
                column=int(match["column"]),
            )
        raise ConfigError(path, [issue]) from None


def config_from_mapping(
    values: Mapping[str, Any], *, path: str | Path | None = None, use_env: bool = True
) -> AgentConfig:
    """Validate parsed values (plus, with ``use_env``, the environment overrides)."""
    try:
        if use_env:
            overlaid = _EnvOverlay(**values)
            return AgentConfig.model_validate(overlaid.model_dump())
        return AgentConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(path, issues_from_validation(exc, use_env=use_env)) from None


def load_config(path: str | Path) -> AgentConfig:
    """Load a gateway's TOML file, apply environment overrides, validate everything.

    Raises :class:`ConfigError` listing every problem: by field path (``sources[0].port``)
    for invalid values, by line and column for TOML syntax errors.
    """
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(file, [ConfigIssue(None, f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(file, [ConfigIssue(None, f"not UTF-8: {exc.reason}")]) from None
    return config_from_mapping(parse_toml(text, file), path=file)


# -- error reporting ------------------------------------------------------------------------


def _format_loc(loc: tuple[str | int, ...]) -> str:
    """``("sources", 0, "modbus", "port")`` -> ``sources[0].port``."""
    out = ""
    previous: str | int | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif previous is not None and isinstance(previous, int) and part in SOURCE_TYPES:
            pass  # the discriminated-union tag pydantic puts in the location
        else:
            out += f".{part}" if out else part
        previous = part
    return out or "(config)"


_SECRET_FIELDS: Final = frozenset({"password"})


def _env_name(loc: tuple[str | int, ...]) -> str | None:
    """The override variable that set ``loc`` (or a parent of it), if one is set."""
    parts: list[str] = []
    found: str | None = None
    environ = {k.upper() for k in os.environ}
    for part in loc:
        if isinstance(part, int) or part in SOURCE_TYPES:
            break
        parts.append(part.upper())
        name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(parts)
        if name in environ:
            found = name
    return found


def issues_from_validation(exc: ValidationError, *, use_env: bool = False) -> list[ConfigIssue]:
    """One :class:`ConfigIssue` per pydantic error, located by field path."""
    issues: list[ConfigIssue] = []
    for err in exc.errors(include_url=False):
        ctx = err.get("ctx") or {}
        nested = ctx.get("issues")
        if err["type"] == "config_consistency" and isinstance(nested, tuple):
            issues.extend(ConfigIssue(_format_loc(loc), msg) for loc, msg in nested)
            continue
        loc = tuple(err["loc"])
        message = err["msg"]
        value = err.get("input")
        secret = any(part in _SECRET_FIELDS for part in loc)
        if (
            not secret
            and err["type"] not in {"missing", "invalid_id", "invalid_topic_prefix"}
            and isinstance(value, str | int | float | bool)
            and len(repr(value)) <= 80
        ):
            message += f" (got {value!r})"
        if use_env and (env := _env_name(loc)) is not None:
            message += f" [from environment variable {env}]"
        issues.append(ConfigIssue(_format_loc(loc), message))
    return issues
