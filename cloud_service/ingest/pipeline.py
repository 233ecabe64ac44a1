"""The pure core of ingest: MQTT messages in, lines to write, dead letters and acks out.

No I/O here: the MQTT/HTTP shell (``worker.py``) feeds it received messages and carries out
what it returns, in order: write the lines, keep the dead letters, then PUBACK and publish the
end-to-end acks. Nothing is acknowledged before it is stored or dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cloud_service.deadletter import DeadLetter
from cloud_service.ingest.catalog import SignalCatalog
from cloud_service.ingest.points import PointMapper
from cloud_service.ingest.sequence import SequenceTracker
from shared.codec import Limits, MessageDecoder, TelemetryDecoder
from shared.errors import ContractError, Reason
from shared.ids import is_valid_id
from shared.messages import Ack, Birth, State
from shared.topics import Channel, TopicScheme

INGESTED_CHANNELS: Final = (Channel.TELEMETRY, Channel.BIRTH, Channel.STATE)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A received MQTT message; ``token`` is what the shell needs to acknowledge it."""

    topic: str
    payload: bytes
    received_ms: int
    token: object = None


@dataclass(frozen=True, slots=True)
class BatchRef:
    site: str
    gateway: str
    boot: str
    seq: int
    first_unacked: int
    readings: int


@dataclass(slots=True)
class Prepared:
    """Work for the shell: write ``lines``, keep ``dead``, then ack ``tokens`` and ``batches``."""

    lines: list[str] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    batches: list[BatchRef] = field(default_factory=list)
    tokens: list[object] = field(default_factory=list)
    states: dict[tuple[str, str], State] = field(default_factory=dict)


@dataclass(slots=True)
class IngestCore:
    scheme: TopicScheme
    limits: Limits = field(default_factory=Limits)
    catalog: SignalCatalog = field(default_factory=SignalCatalog)
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    mapper: PointMapper = field(init=False)
    readings_in: int = 0
    _telemetry: TelemetryDecoder = field(init=False)
    _birth: MessageDecoder[Birth] = field(init=False)
    _state: MessageDecoder[State] = field(init=False)

    def __post_init__(self) -> None:
        self.mapper = PointMapper(self.catalog)
        self._telemetry = TelemetryDecoder(self.limits)
        self._birth = MessageDecoder(Birth, self.limits)
        self._state = MessageDecoder(State, self.limits)

    def prepare(self, messages: list[Inbound]) -> Prepared:
        out = Prepared()
        for m in messages:
            self.add(m, out)
        return out

    def add(self, m: Inbound, out: Prepared) -> None:
        """Decode one message into ``out``; a refused message becomes a dead letter."""
        out.tokens.append(m.token)
        try:
            self._one(m, out)
        except ContractError as exc:
            gateway = _gateway_of(m.topic)
            out.dead.append(
                DeadLetter(exc.reason, str(exc), m.topic, gateway, m.received_ms, m.payload)
            )

    def _one(self, m: Inbound, out: Prepared) -> None:
        address = self.scheme.parse(m.topic)
        if address.channel is Channel.TELEMETRY:
            decoded = self._telemetry.decode(
                m.payload, now_ms=m.received_ms, expect_gateway=address.gateway
            )
            batch = decoded.batch
            for r in decoded.rejected:
                out.dead.append(
                    DeadLetter(
                        r.reason, r.detail, m.topic, address.gateway, m.received_ms, r.raw, r.index
                    )
                )
            out.lines.extend(self.mapper.lines(address.site, address.gateway, batch.readings))
            self.readings_in += len(batch.readings) + len(decoded.rejected)
            out.batches.append(
                BatchRef(
                    address.site,
                    address.gateway,
                    batch.boot,
                    batch.seq,
                    batch.first_unacked,
                    len(batch.readings),
                )
            )
        elif not m.payload:
            return  # a retained birth/state being cleared
        elif address.channel is Channel.BIRTH:
            birth = self._birth.decode(m.payload)
            if birth.gateway != address.gateway or birth.site != address.site:
                raise ContractError(Reason.TOPIC_MISMATCH, "birth names another gateway or site")
            self.catalog.learn(address.site, birth)
            self.mapper.forget(address.site, address.gateway)
        elif address.channel is Channel.STATE:
            out.states[(address.site, address.gateway)] = self._state.decode(m.payload)
        else:
            raise ContractError(Reason.BAD_TOPIC, f"ingest does not take {address.channel.value!r}")

    def stored(self, prepared: Prepared, now_ms: int) -> list[tuple[str, Ack]]:
        """After the write: the end-to-end acks to publish, as (site, ack), one per boot."""
        acks: dict[tuple[str, str, str], Ack] = {}
        for b in prepared.batches:
            result = self.tracker.stored(b.gateway, b.boot, b.seq, b.first_unacked)
            if result.ack > 0:
                acks[(b.site, b.gateway, b.boot)] = Ack(
                    gateway=b.gateway, boot=b.boot, seq=result.ack, ts=now_ms
                )
        return [(site, ack) for (site, _, _), ack in acks.items()]


def _gateway_of(topic: str) -> str | None:
    parts = topic.split("/")
    return parts[-2] if len(parts) >= 2 and is_valid_id(parts[-2]) else None
