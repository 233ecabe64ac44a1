"""Configuration of sources (Modbus TCP, OPC UA, HTTP/MES, CSV replay) and of signals.

Each source type is one model told apart by ``type``; a signal names its source and carries the
addressing fields that source type needs (``address`` for Modbus, ``node`` for OPC UA,
``field`` for HTTP, ``column`` for CSV); :mod:`edge_agent.config` checks that pairing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, ClassVar, Final, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from shared.messages import SignalKind

from .config_types import (
    FilePath,
    FiniteFloat,
    IdStr,
    Model,
    Port,
    Problems,
    Secret,
    Text,
    check,
)


class RegisterType(StrEnum):
    HOLDING = "holding"  # function code 3
    INPUT = "input"  # function code 4


class DataType(StrEnum):
    FLOAT32 = "float32"  # IEEE 754 single, 2 registers
    UINT32 = "uint32"  # 2 registers
    INT32 = "int32"  # 2 registers, two's complement
    INT16 = "int16"  # 1 register, two's complement
    UINT16 = "uint16"  # 1 register


#: Registers per value of each data type.
REGISTER_WIDTH: Final[Mapping[DataType, int]] = {
    DataType.FLOAT32: 2,
    DataType.UINT32: 2,
    DataType.INT32: 2,
    DataType.INT16: 1,
    DataType.UINT16: 1,
}


class WordOrder(StrEnum):
    """Order of the 16-bit words of a 32-bit value; bytes within a word are always big-endian."""

    BIG = "big"  # most significant word first ("ABCD"), the Modbus convention
    LITTLE = "little"  # least significant word first ("CDAB"), common on some PLCs


class _Reconnecting(Model, frozen=True, kw_only=True):
    reconnect_min_s: Annotated[float, Meta(gt=0, le=3600)] = 0.5
    reconnect_max_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0

    def problems(self) -> Problems:
        if self.reconnect_max_s < self.reconnect_min_s:
            return [(("reconnect_max_s",), "must be >= reconnect_min_s")]
        return []


class ModbusSourceConfig(_Reconnecting, frozen=True, kw_only=True):
    """A Modbus TCP device. Adjacent registers are read in one request (up to
    ``max_block_registers``; ``max_gap`` unused registers may be read to join two blocks)."""

    type: Literal["modbus"]
    id: IdStr
    host: Annotated[str, Meta(min_length=1)]
    port: Port = 502
    unit_id: Annotated[int, Meta(ge=0, le=255)] = 1
    timeout_s: Annotated[float, Meta(gt=0, le=60)] = 1.0
    retries: Annotated[int, Meta(ge=0, le=10)] = 1  # per request, after the first attempt
    max_block_registers: Annotated[int, Meta(ge=2, le=125)] = 125  # 125: the FC 3/4 limit
    max_gap: Annotated[int, Meta(ge=0, le=123)] = 0


class OpcUaSourceConfig(_Reconnecting, frozen=True, kw_only=True):
    """An OPC UA server: data-change subscriptions (default) or polling reads of nodes."""

    secret_fields: ClassVar[frozenset[str]] = frozenset({"password"})

    type: Literal["opcua"]
    id: IdStr
    url: Annotated[str, Meta(pattern=r"^opc\.tcp://[^\s]+\Z")]
    mode: Literal["subscription", "poll"] = "subscription"
    publishing_interval_ms: Annotated[int, Meta(ge=10, le=3_600_000)] = 500
    timeout_s: Annotated[float, Meta(gt=0, le=60)] = 2.0
    username: str | None = None
    password: Secret | None = None


_URL_CHARS: Final = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces
#: A header name: an RFC 9110 token (both patterns are used with ``fullmatch``).
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _http_url_problem(value: str) -> str | None:
    """What the HTTP client would refuse (or misread) in ``value``; None when it is usable."""
    if _URL_CHARS.fullmatch(value) is None:
        return f"must be printable ASCII without spaces (percent-encode the rest) (got {value!r})"
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number or not 0..65535
    except ValueError as exc:
        return f"not a usable URL: {exc} (got {value!r})"
    if parts.scheme not in ("http", "https"):
        return f"must start with http:// or https:// (got {value!r})"
    if not parts.hostname:
        return f"names no host (got {value!r})"
    if port == 0:
        return f"port must be 1..65535 (got {value!r})"
    return None


def _header_value_problem(value: str) -> str | None:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError as exc:  # the value may be a token: name the character only
        return f"must be Latin-1 text, as HTTP headers are ({value[exc.start]!r} is not)"
    return None


#: A URL the HTTP/MES source can GET.
HttpUrl = Annotated[str, check(_http_url_problem)]
#: An HTTP header value: printable Latin-1 text.
HeaderValue = Annotated[Text, check(_header_value_problem)]


class HttpSourceConfig(_Reconnecting, frozen=True, kw_only=True):
    """A JSON endpoint (MES, ERP, a line controller) polled with GET; one request per poll."""

    secret_fields: ClassVar[frozenset[str]] = frozenset({"bearer_token"})

    type: Literal["http"]
    id: IdStr
    url: Annotated[HttpUrl, Meta(pattern=r"^https?://[^\s]+$")]
    timeout_s: Annotated[float, Meta(gt=0, le=60)] = 2.0
    headers: dict[str, HeaderValue] = msgspec.field(default_factory=dict)
    bearer_token: Secret | None = None
    verify_tls: bool = True
    max_bytes: Annotated[int, Meta(ge=1024, le=256 * 1024 * 1024)] = 4 * 1024 * 1024

    def problems(self) -> Problems:
        found = super().problems()
        found.extend(
            (("headers",), f"{name!r} is not a header name (letters, digits, !#$%&'*+-.^_`|~)")
            for name in self.headers
            if _HEADER_NAME.fullmatch(name) is None
        )
        if self.bearer_token is not None:
            token = self.bearer_token.get_secret_value()
            if not token.isprintable() or _header_value_problem(token) is not None:
                # the value stays out of the message: it is a secret
                found.append((("bearer_token",), "must be printable Latin-1 text"))
        return found


class CsvSourceConfig(Model, frozen=True, kw_only=True):
    """Rows of a CSV export, for back-filling (file timestamps) or replaying in real time."""

    type: Literal["csv"]
    id: IdStr
    path: FilePath
    time_column: Annotated[str, Meta(min_length=1)] = "ts"
    # epoch_ms / epoch_s numbers, or ISO 8601 (a naive time is taken as UTC).
    time_format: Literal["iso8601", "epoch_ms", "epoch_s"] = "iso8601"
    # backfill: readings keep the file's timestamps and travel as historical batches;
    # realtime: one row per read, stamped with the gateway clock (a recorded plant replayed).
    mode: Literal["backfill", "realtime"] = "backfill"
    rows_per_read: Annotated[int, Meta(ge=1, le=100_000)] = 1000
    loop: bool = False  # realtime only: start over at the end of the file
    delimiter: Annotated[str, Meta(min_length=1, max_length=1)] = ","


#: Every kind of source, told apart by ``type`` (the validator picks the struct by it).
SourceConfig = ModbusSourceConfig | OpcUaSourceConfig | HttpSourceConfig | CsvSourceConfig
SOURCE_TYPES: Final = frozenset({"modbus", "opcua", "http", "csv"})
#: The signal field each source type addresses its signals by.
ADDRESS_FIELD: Final[Mapping[str, str]] = {
    "modbus": "address",
    "opcua": "node",
    "http": "field",
    "csv": "column",
}
COUNTER_KINDS: Final = frozenset({SignalKind.PRODUCTION_COUNT, SignalKind.CONSUMPTION})
_SPAN = 86_400 * 366


class SignalConfig(Model, frozen=True, kw_only=True):
    """One measured quantity: where a source finds it, how to scale it, what it means, and when
    it is worth reporting.

    The value published is ``raw * scale + offset``. Report by exception: a new value is
    published when it moved more than ``deadband`` (absolute) or ``deadband_percent`` (of the
    last reported value) from the last one reported, when its quality changes, or when
    ``heartbeat_s`` passed since the last report; both deadbands 0 (the default) report every
    sample. ``counter_bits`` marks a device counter that wraps at 2**bits: the published value
    is then a running total that survives rollovers, device resets and agent restarts.
    """

    id: IdStr
    source: IdStr
    kind: SignalKind
    unit: Text = ""
    sku: IdStr | None = None
    location: IdStr | None = None
    line: IdStr | None = None
    period_s: Annotated[float, Meta(gt=0, le=_SPAN)] = 60.0
    description: Text = ""
    scale: FiniteFloat = 1.0
    offset: FiniteFloat = 0.0
    # -- report by exception
    deadband: Annotated[FiniteFloat, Meta(ge=0)] = 0.0
    deadband_percent: Annotated[float, Meta(ge=0, le=100)] = 0.0
    heartbeat_s: Annotated[float, Meta(gt=0, le=_SPAN)] = 60.0
    # -- counters
    counter_bits: Literal[16, 32, 64] | None = None
    counter_max_step: Annotated[FiniteFloat, Meta(gt=0)] | None = None
    # -- Modbus addressing
    address: Annotated[int, Meta(ge=0, le=65535)] | None = None
    register_type: RegisterType = RegisterType.HOLDING
    data_type: DataType = DataType.FLOAT32
    word_order: WordOrder = WordOrder.BIG
    # -- OPC UA addressing: a node id string ("ns=2;s=Line3.Count", "ns=2;i=1001")
    node: Annotated[str, Meta(min_length=1, max_length=512)] | None = None
    # -- HTTP addressing: a dotted path into the JSON document ("lines.L3.count", "orders.0.qty")
    field: Annotated[str, Meta(min_length=1, max_length=512)] | None = None
    # maps text values (order status) to numbers; booleans are 1/0 without a map
    value_map: dict[str, FiniteFloat] = msgspec.field(default_factory=dict)
    # -- CSV addressing: a column name
    column: Annotated[str, Meta(min_length=1, max_length=256)] | None = None

    def problems(self) -> Problems:
        if self.counter_bits is not None and self.kind not in COUNTER_KINDS:
            return [
                (
                    ("counter_bits",),
                    "applies to production_count and consumption signals only",
                )
            ]
        if self.counter_max_step is not None and self.counter_bits is None:
            return [(("counter_max_step",), "needs counter_bits")]
        return []
