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

import contextlib
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Self

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from shared.ids import InvalidIdError
from shared.topics import DEFAULT_PREFIX, TopicScheme

from .config_runtime import (
    BatchingConfig,
    BrokerConfig,
    ClockConfig,
    DeliveryConfig,
    DropPolicy,
    SpoolConfig,
    StatusConfig,
    TlsConfig,
)
from .config_sources import (
    ADDRESS_FIELD,
    REGISTER_WIDTH,
    SOURCE_TYPES,
    CsvSourceConfig,
    DataType,
    HttpSourceConfig,
    ModbusSourceConfig,
    OpcUaSourceConfig,
    RegisterType,
    SignalConfig,
    SourceConfig,
    WordOrder,
)
from .config_types import ID_RULE, IdStr, Model
from .errors import ConfigError, ConfigIssue

__all__ = [
    "ENV_PREFIX",
    "REGISTER_WIDTH",
    "SOURCE_TYPES",
    "AgentConfig",
    "BatchingConfig",
    "BrokerConfig",
    "ClockConfig",
    "CsvSourceConfig",
    "DataType",
    "DeliveryConfig",
    "DropPolicy",
    "HttpSourceConfig",
    "ModbusSourceConfig",
    "OpcUaSourceConfig",
    "RegisterType",
    "SignalConfig",
    "SourceConfig",
    "SpoolConfig",
    "StatusConfig",
    "TlsConfig",
    "WordOrder",
    "config_from_mapping",
    "load_config",
    "parse_toml",
]

ENV_PREFIX: Final = "FLIGHTDECK_EDGE_"
ENV_NESTED_DELIMITER: Final = "__"


def _check_prefix(value: str) -> str:
    try:
        TopicScheme(value)
    except InvalidIdError as exc:
        raise PydanticCustomError(
            "invalid_topic_prefix",
            "{detail}",
            {"detail": f"{value!r}: every '/'-separated level must be an id; {ID_RULE}"},
        ) from exc
    return value


class AgentConfig(Model):
    """Everything one gateway's agent needs. Frozen; build it with :func:`load_config`."""

    site: IdStr
    gateway: IdStr
    topic_prefix: Annotated[str, AfterValidator(_check_prefix)] = DEFAULT_PREFIX
    broker: BrokerConfig = BrokerConfig()
    batching: BatchingConfig = BatchingConfig()
    spool: SpoolConfig = SpoolConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    status: StatusConfig = StatusConfig()
    clock: ClockConfig = ClockConfig()
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

    @property
    def spool_path(self) -> Path:
        """Where the spool lives: ``spool.path``, else ``var/edge/{gateway}/spool.db``."""
        return self.spool.path or Path("var") / "edge" / self.gateway / "spool.db"

    def source(self, source_id: str) -> SourceConfig | None:
        return next((s for s in self.sources if s.id == source_id), None)

    def signals_of(self, source_id: str) -> list[SignalConfig]:
        return [s for s in self.signals if s.source == source_id]

    def config_hash(self) -> str:
        """A stable sha256 (hex) of the normalised config, announced in the birth message.

        Normalised: defaults filled in, keys sorted, so a file that spells out a default hashes
        like one that omits it. Secrets are left out: the hash is published.
        """
        data = self.model_dump(
            mode="json",
            exclude={"broker": {"password"}, "status": {"ack_token"}},
        )
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


Issues = list[tuple[tuple[str | int, ...], str]]


def _cross_reference_issues(cfg: AgentConfig) -> Issues:
    issues: Issues = []
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
        issues.extend(_addressing_issues(i, sig, owner))
    if cfg.delivery.window > cfg.broker.max_queued:
        issues.append(
            (
                ("delivery", "window"),
                f"{cfg.delivery.window} exceeds broker.max_queued ({cfg.broker.max_queued})",
            )
        )
    return issues


def _addressing_issues(i: int, sig: SignalConfig, owner: SourceConfig) -> Issues:
    """The signal must carry the address field of its source's type, and no other."""
    issues: Issues = []
    wanted = ADDRESS_FIELD[owner.type]
    if getattr(sig, wanted) is None:
        issues.append((("signals", i, wanted), f"required for a {owner.type} source"))
    for other_type, name in ADDRESS_FIELD.items():
        if name != wanted and getattr(sig, name) is not None:
            issues.append(
                (
                    ("signals", i, name),
                    f"applies to {other_type} sources; {sig.source!r} is {owner.type}",
                )
            )
    if sig.value_map and owner.type != "http":
        issues.append((("signals", i, "value_map"), "applies to http sources only"))
    if (
        owner.type == "modbus"
        and sig.address is not None
        and sig.address + REGISTER_WIDTH[sig.data_type] - 1 > 65535
    ):
        issues.append(
            (("signals", i, "address"), f"a {sig.data_type} at {sig.address} ends past 65535")
        )
    return issues


# -- loading --------------------------------------------------------------------------------


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``FLIGHTDECK_EDGE_BROKER__HOST=x`` -> ``{"broker": {"host": "x"}}`` (names case-blind).

    A value starting with ``[`` or ``{`` is JSON (lists such as ``signals`` are replaced
    whole); anything else stays a string, which validation converts (``"1884"`` -> 1884).
    Our own twenty lines instead of pydantic-settings, which alone costs a gateway ~16 MB.
    """
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split(ENV_NESTED_DELIMITER)
        if not all(path):
            continue
        value: Any = raw
        if raw.lstrip()[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):  # else validation reports the string
                value = json.loads(raw)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return out


def _merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` over ``base``, table by table (the environment wins over the file)."""
    merged = dict(base)
    for key, value in overlay.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, Mapping):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


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
            values = _merge(values, env_overrides(os.environ))
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
