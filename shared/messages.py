"""Message types of the wire contract (msgspec Structs: decoded and validated in C).

Readings travel as compact arrays ``[signal, ts_ms, value, quality]``; every other message is an
object with named fields. Unknown fields are ignored so a newer sender can add optional fields
without breaking an older receiver; a breaking change bumps the topic version instead.
"""

from __future__ import annotations

import sys
from enum import IntEnum, StrEnum
from typing import Annotated, Final

import msgspec

from shared.ids import Id

_FLOAT_MAX: Final = sys.float_info.max
#: A finite float. msgspec checks the bounds in C; NaN and +-Inf fail them.
Finite = Annotated[float, msgspec.Meta(ge=-_FLOAT_MAX, le=_FLOAT_MAX)]
#: Milliseconds since the Unix epoch (UTC), inside what InfluxDB can store (1677..2262).
EpochMs = Annotated[int, msgspec.Meta(ge=-9_223_372_036_854, le=9_223_372_036_854)]
#: Printable text without control characters, bounded; for labels, units, operator names.
Text = Annotated[str, msgspec.Meta(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*\Z")]
LongText = Annotated[str, msgspec.Meta(max_length=4096, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*\Z")]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Quality(IntEnum):
    """Reading quality, OPC UA style collapsed to what S&OE decisions need."""

    GOOD = 0
    UNCERTAIN = 1  # plausible but suspect: substituted, clock not trusted, sensor warming up
    BAD = 2  # the device reports a fault or the value is outside its range
    COMM_FAILURE = 3  # the source could not be read; value is null


class SignalKind(StrEnum):
    STOCK_LEVEL = "stock_level"
    PRODUCTION_COUNT = "production_count"
    CONSUMPTION = "consumption"
    SENSOR = "sensor"


#: A signal id as the type checks it: a string. The id rule is applied by
#: ``shared.codec.TelemetryDecoder`` with a cache of ids already seen, because a per-string
#: regex in the type costs 0.4 µs a reading, more than all the rest of decoding (see bench/).
SignalRef = str


class Reading(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One sample: ``[signal, ts_ms, value, quality]``; ``value`` is null only when not GOOD.

    Decode telemetry with ``shared.codec.TelemetryDecoder``: it enforces the id rule on
    ``signal``, the timestamp window and the value/quality pairing that this type alone cannot.
    """

    signal: SignalRef
    ts: EpochMs
    value: Finite | None
    quality: Quality = Quality.GOOD


class TelemetryBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Readings from one gateway, numbered per boot so the cloud can ack and detect gaps.

    ``seq`` starts at 1 and increases by one per batch within a ``boot``. ``first_unacked`` is
    the lowest seq of that boot the gateway still holds un-acked: everything below it was
    acked before, so a cloud that lost its memory (restart) can resume contiguous acks from
    there instead of waiting forever for batches the gateway has already deleted.
    ``historical`` marks replayed spool data, which must not raise live alerts.
    ``clock_step_ms`` is the largest step of the gateway clock the agent saw while collecting
    this batch (0: none), so the cloud can flag timestamps.
    """

    gateway: Id
    boot: Id
    seq: Seq
    readings: list[Reading]
    first_unacked: Seq = 1
    historical: bool = False
    clock_step_ms: int = 0


class SignalSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One entry of a gateway's signal catalog, announced in its birth message."""

    id: Id
    kind: SignalKind
    unit: Text = ""
    sku: Id | None = None
    location: Id | None = None
    line: Id | None = None
    period_s: Annotated[float, msgspec.Meta(gt=0, le=86_400 * 366)] = 60.0
    description: Text = ""


class Birth(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Retained on the ``birth`` channel: who this gateway is and what it measures."""

    gateway: Id
    site: Id
    boot: Id
    agent_version: Text
    config_hash: Text
    started_ms: EpochMs
    signals: list[SignalSpec]
    dropped: dict[Id, Count] = {}  # readings dropped by spool policy, per signal, since install


class GatewayState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class State(msgspec.Struct, frozen=True, kw_only=True):
    """Retained on the ``state`` channel; the offline variant is the MQTT will."""

    state: GatewayState
    boot: Id
    ts: EpochMs


class Ack(msgspec.Struct, frozen=True, kw_only=True):
    """Cloud to edge: every batch of ``boot`` up to and including ``seq`` is durably stored.

    Retained per gateway, so a reconnecting gateway learns the latest ack at once.
    """

    gateway: Id
    boot: Id
    seq: Seq
    ts: EpochMs


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    ACTIVE = "active"
    CLEARED = "cleared"


class Alert(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Cloud to edge: an adjustment alert as the plant should show it.

    ISA-18.2 states: ``active`` (acknowledged or not), ``cleared`` and unacknowledged (the
    plant keeps showing it until someone acknowledges it), and closed (cleared and
    acknowledged, or cleared when it needed no acknowledgement): ``closed`` is true on the
    one final state the cloud sends, after which the alert is gone.

    Optional fields added in contract v1 (older receivers ignore them, older senders omit
    them): ``shelved_until`` (an operator shelved it in the cloud until then: nobody's
    attention, no andon), ``closed``, and ``rev``, the cloud's publication revision of this
    alert's state on its gateway's ``alerts`` topics, compared with ``AlertIndex.rev``
    (0: sent by a cloud that does not number them).
    """

    id: Id
    rule: Id
    severity: Severity
    state: AlertState
    acked: bool = False
    subject: Id  # the signal, SKU, line or gateway the alert is about
    title: Text
    message: LongText = ""
    action: LongText = ""  # the recommended adjustment
    figures: dict[Id, Finite] = {}  # the numbers behind the alert
    raised: EpochMs
    updated: EpochMs
    shelved_until: EpochMs | None = None
    closed: bool = False
    rev: Seq = 0
    #: when the activation shown began (raise or reactivation): a plant ack names it
    activated: EpochMs | None = None


class AlertIndex(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Cloud to edge, retained on ``alert-index``: the gateway's open alerts right now.

    ``alerts`` maps each open alert's id to the ``rev`` of its state retained on its
    ``alerts/{id}`` topic. ``rev`` is the highest revision the cloud had published for this
    gateway when it built the index (revisions only grow). A gateway holding an alert that
    is not listed and whose ``rev`` is at most the index's knows the alert is gone (it closed
    while the gateway was away); one with a higher ``rev`` is newer than the index, and a
    newer index follows.
    """

    gateway: Id
    rev: Seq
    ts: EpochMs
    alerts: dict[Id, Seq] = {}


class AlertAck(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Edge to cloud: an operator acknowledged an alert at the plant (possibly while offline)."""

    alert: Id
    gateway: Id
    operator: Text
    ts: EpochMs
    comment: LongText = ""
    #: the ``activated`` of the alert as the operator saw it: an ack of an activation that has
    #: since cleared and come back does not acknowledge the new one (None: any activation)
    activated: EpochMs | None = None


class CommandName(StrEnum):
    PING = "ping"
    RESEND_BIRTH = "resend_birth"
    RELOAD_CONFIG = "reload_config"
    ALERT_ACK = "alert_ack"  # a cloud-side acknowledgement, mirrored to the plant


class Command(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Cloud to edge: a request the agent executes and may answer on its state channel."""

    id: Id
    name: CommandName
    ts: EpochMs
    args: dict[Id, Text | Finite | bool] = {}


#: Every message type of the contract, for generic tooling and tests.
MESSAGE_TYPES: Final = (TelemetryBatch, Birth, State, Ack, Alert, AlertIndex, AlertAck, Command)
