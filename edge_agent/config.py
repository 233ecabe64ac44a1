"""Gateway configuration: one TOML file per gateway, validated into frozen msgspec structs.

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
from typing import Annotated, Any, Final

import msgspec

from shared.ids import InvalidIdError
from shared.topics import DEFAULT_PREFIX, TopicScheme

from .config_runtime import (
    AndonConfig,
    BatchingConfig,
    BrokerConfig,
    ClockConfig,
    DeliveryConfig,
    DropPolicy,
    MqttProtocol,
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
from .config_types import (
    ID_RULE,
    ConfigInvalid,
    IdStr,
    Loc,
    Model,
    Problems,
    Secret,
    check,
    format_loc,
)
from .errors import ConfigError, ConfigIssue

__all__ = [
    "ENV_PREFIX",
    "REGISTER_WIDTH",
    "SOURCE_TYPES",
    "AgentConfig",
    "AndonConfig",
    "BatchingConfig",
    "BrokerConfig",
    "ClockConfig",
    "CsvSourceConfig",
    "DataType",
    "DeliveryConfig",
    "DropPolicy",
    "HttpSourceConfig",
    "ModbusSourceConfig",
    "MqttProtocol",
    "OpcUaSourceConfig",
    "RegisterType",
    "Secret",
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


def _prefix_problem(value: str) -> str | None:
    try:
        TopicScheme(value)
    except InvalidIdError:
        return f"{value!r}: every '/'-separated level must be an id; {ID_RULE}"
    return None


class AgentConfig(Model, frozen=True, kw_only=True):
    """Everything one gateway's agent needs. Frozen; build it with :func:`load_config`."""

    site: IdStr
    gateway: IdStr
    topic_prefix: Annotated[str, check(_prefix_problem)] = DEFAULT_PREFIX
    broker: BrokerConfig = msgspec.field(default_factory=BrokerConfig)
    batching: BatchingConfig = msgspec.field(default_factory=BatchingConfig)
    spool: SpoolConfig = msgspec.field(default_factory=SpoolConfig)
    delivery: DeliveryConfig = msgspec.field(default_factory=DeliveryConfig)
    status: StatusConfig = msgspec.field(default_factory=StatusConfig)
    clock: ClockConfig = msgspec.field(default_factory=ClockConfig)
    andon: AndonConfig | None = None
    sources: Annotated[list[SourceConfig], msgspec.Meta(min_length=1)]
    signals: Annotated[list[SignalConfig], msgspec.Meta(min_length=1)]

    def problems(self) -> Problems:
        return _cross_reference_issues(self)

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
        data = msgspec.to_builtins(self, enc_hook=_to_json)
        del data["broker"]["password"], data["status"]["ack_token"]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _to_json(value: object) -> object:
    if isinstance(value, Secret):
        return "**********"  # a source's token: present or not, never its value
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(type(value))  # pragma: no cover - nothing else is declared


Issues = Problems


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
    if cfg.andon is not None and cfg.andon.source is not None:
        owner = sources.get(cfg.andon.source)
        if owner is None:
            known = ", ".join(sorted(sources)) or "none"
            issues.append(
                (("andon", "source"), f"unknown source {cfg.andon.source!r} (defined: {known})")
            )
        elif owner.type != "modbus":
            issues.append((("andon", "source"), f"{owner.id!r} is {owner.type}, not modbus"))
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
    if use_env:
        values = _merge(values, env_overrides(os.environ))
    try:
        return AgentConfig.from_mapping(values)
    except ConfigInvalid as exc:
        raise ConfigError(path, issues_from_problems(exc.problems, use_env=use_env)) from None


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


def _env_name(loc: Loc) -> str | None:
    """The override variable that set ``loc`` (or a parent of it), if one is set."""
    parts: list[str] = []
    found: str | None = None
    environ = {k.upper() for k in os.environ}
    for part in loc:
        if isinstance(part, int):
            break
        parts.append(part.upper())
        name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(parts)
        if name in environ:
            found = name
    return found


def issues_from_problems(problems: Problems, *, use_env: bool = False) -> list[ConfigIssue]:
    """One :class:`ConfigIssue` per problem, located by field path (and variable, if set)."""
    issues: list[ConfigIssue] = []
    for loc, message in problems:
        env = _env_name(loc) if use_env else None
        suffix = "" if env is None else f" [from environment variable {env}]"
        issues.append(ConfigIssue(format_loc(loc), message + suffix))
    return issues
