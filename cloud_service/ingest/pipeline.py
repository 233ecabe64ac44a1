"""The pure core of ingest: MQTT messages in, lines to write, dead letters and acks out.

No I/O here: the MQTT/HTTP shell (``worker.py``) feeds it received messages and carries out
what it returns, in order: write the lines, keep the dead letters and registry records, then
PUBACK and publish the end-to-end acks. Nothing is acknowledged before it is stored or
dead-lettered.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cloud_service.deadletter import DeadLetter
from cloud_service.ingest.catalog import SignalCatalog
from cloud_service.ingest.peers import StoredReport, StreamReport
from cloud_service.ingest.points import PointMapper
from cloud_service.ingest.records import BirthRecord, StateRecord
from cloud_service.ingest.sequence import SequenceTracker
from shared.codec import Limits, MessageDecoder, TelemetryDecoder, batch_identity
from shared.errors import ContractError, Reason
from shared.ids import is_valid_id
from shared.messages import Ack, Birth, State, TelemetryBatch
from shared.topics import Channel, TopicAddress, TopicScheme

log = logging.getLogger(__name__)
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
    historical: bool = False
    latest: dict[str, int] = field(default_factory=dict)  # signal -> newest device time
    received_ms: int = 0
    #: Refused as a whole and dead-lettered: its seq is settled (acked) with no readings, and
    #: it says nothing about the gateway's health.
    refused: bool = False


@dataclass(slots=True)
class Prepared:
    """Work for the shell: write ``lines``, keep ``dead``, record ``births``/``states``, then
    ack ``tokens`` and ``batches``."""

    lines: list[str] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    batches: list[BatchRef] = field(default_factory=list)
    tokens: list[object] = field(default_factory=list)
    births: list[BirthRecord] = field(default_factory=list)
    states: list[StateRecord] = field(default_factory=list)
    first_received_ms: int = 0
    #: (end of its lines in ``lines``, topic, gateway) per telemetry message, so a line the
    #: store refuses is dead-lettered under the message it came from.
    sources: list[tuple[int, str, str]] = field(default_factory=list)

    def source_of(self, line_index: int) -> tuple[str, str | None]:
        i = bisect.bisect_right(self.sources, line_index, key=lambda s: s[0])
        if i < len(self.sources):
            return self.sources[i][1], self.sources[i][2]
        return "(store)", None


@dataclass(slots=True)
class Outcome:
    """What storing a :class:`Prepared` changed: acks to publish, a report for peers."""

    acks: list[tuple[str, Ack]] = field(default_factory=list)  # (site, ack), one per stream
    report: list[StreamReport] = field(default_factory=list)
    duplicates: int = 0
    gaps: int = 0  # seqs newly seen missing
    filled: int = 0


@dataclass(slots=True)
class IngestCore:
    scheme: TopicScheme
    limits: Limits = field(default_factory=Limits)
    catalog: SignalCatalog = field(default_factory=SignalCatalog)
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    mapper: PointMapper = field(init=False)
    #: Live consumers (analytics): every decoded batch and every catalog, as they arrive,
    #: before the write (an observer must tolerate seeing a redelivered batch again).
    on_batch: Callable[[str, str, TelemetryBatch, int], None] | None = None
    on_birth: Callable[[str, Birth], None] | None = None
    readings_in: int = 0
    observer_errors: int = 0
    #: A batch refused whole settles its seq only if its dead letter keeps it whole: no
    #: longer than this (the dead letters' ``max_raw_bytes``; None: no limit).
    settle_max_bytes: int | None = None
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
        if not out.tokens:
            out.first_received_ms = m.received_ms
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
            try:
                decoded = self._telemetry.decode(
                    m.payload, now_ms=m.received_ms, expect_gateway=address.gateway
                )
            except ContractError as exc:
                if exc.reason is not Reason.TOPIC_MISMATCH:
                    self._settle_refused(address.site, address.gateway, m, out)
                raise
            batch = decoded.batch
            for r in decoded.rejected:
                out.dead.append(
                    DeadLetter(
                        r.reason, r.detail, m.topic, address.gateway, m.received_ms, r.raw, r.index
                    )
                )
            out.lines.extend(self.mapper.lines(address.site, address.gateway, batch.readings))
            if self.on_batch is not None:
                try:
                    self.on_batch(address.site, address.gateway, batch, m.received_ms)
                except Exception:  # analytics must never stop storing
                    self.observer_errors += 1
                    log.exception("live analytics failed on a batch of %s", m.topic)
            out.sources.append((len(out.lines), m.topic, address.gateway))
            self.readings_in += len(batch.readings) + len(decoded.rejected)
            out.batches.append(
                BatchRef(
                    address.site,
                    address.gateway,
                    batch.boot,
                    batch.seq,
                    batch.first_unacked,
                    len(batch.readings),
                    batch.historical,
                    {r.signal: r.ts for r in batch.readings},
                    m.received_ms,
                )
            )
        elif not m.payload:
            return  # a retained birth/state being cleared
        elif address.channel is Channel.BIRTH:
            birth = self._birth.decode(m.payload)
            check_birth_address(birth, address)
            self.learn(address.site, birth)
            out.births.append(BirthRecord(address.site, birth, m.received_ms))
        elif address.channel is Channel.STATE:
            state = self._state.decode(m.payload)
            out.states.append(StateRecord(address.site, address.gateway, state, m.received_ms))
        else:
            raise ContractError(Reason.BAD_TOPIC, f"ingest does not take {address.channel.value!r}")

    def _settle_refused(self, site: str, gateway: str, m: Inbound, out: Prepared) -> None:
        """A batch refused as a whole still takes its seq, so the contiguous ack moves past it.

        Its raw bytes and reason go to the dead letters, whole (else it is not settled: the
        gateway keeps the only full copy); without this the gateway's ack would stall below
        the seq forever, re-sending a batch that is refused again. Only when the payload names
        a valid gateway, boot and seq and the gateway is the topic's (a batch for another
        gateway's topic settles nothing).
        """
        if self.settle_max_bytes is not None and len(m.payload) > self.settle_max_bytes:
            return  # its dead letter keeps only the head: the gateway's copy must stay
        ident = batch_identity(m.payload)
        if ident is None or ident.gateway != gateway:
            return
        out.batches.append(
            BatchRef(
                site,
                gateway,
                ident.boot,
                ident.seq,
                ident.first_unacked,
                0,
                received_ms=m.received_ms,
                refused=True,
            )
        )

    def learn(self, site: str, birth: Birth) -> None:
        """A gateway's catalog (from a birth, or from the registry at start-up)."""
        self.catalog.learn(site, birth)
        self.mapper.forget(site, birth.gateway)
        if self.on_birth is not None:
            try:
                self.on_birth(site, birth)
            except Exception:  # analytics must never stop storing
                self.observer_errors += 1
                log.exception("live analytics failed on the birth of %s/%s", site, birth.gateway)

    def stored(self, prepared: Prepared, now_ms: int) -> Outcome:
        """After the write: the end-to-end acks to publish, one per stream, and a report."""
        out = Outcome()
        acks: dict[tuple[str, str, str], Ack] = {}
        seqs: dict[tuple[str, str, str], list[int]] = {}
        for b in prepared.batches:
            result = self.tracker.stored(b.gateway, b.boot, b.seq, b.first_unacked)
            out.duplicates += result.duplicate
            out.gaps += result.new_gap
            out.filled += result.filled
            key = (b.site, b.gateway, b.boot)
            seqs.setdefault(key, []).append(b.seq)
            if result.ack > 0:
                acks[key] = Ack(gateway=b.gateway, boot=b.boot, seq=result.ack, ts=now_ms)
        out.acks = [(site, ack) for (site, _, _), ack in acks.items()]
        out.report = [
            StreamReport(site, gw, boot, self.tracker.ack_for(gw, boot), s)
            for (site, gw, boot), s in seqs.items()
        ]
        return out

    def merge(self, report: StoredReport, now_ms: int) -> list[tuple[str, Ack]]:
        """A peer's report: the acks that advanced because of it."""
        acks: list[tuple[str, Ack]] = []
        for s in report.streams:
            before = self.tracker.ack_for(s.gateway, s.boot)
            after = self.tracker.merge(s.gateway, s.boot, s.contiguous, s.seqs)
            if after > before:
                acks.append((s.site, Ack(gateway=s.gateway, boot=s.boot, seq=after, ts=now_ms)))
        return acks


def check_birth_address(birth: Birth, address: TopicAddress) -> None:
    """A birth must name its topic's gateway and site: the broker lets a gateway publish only
    under its own topics, but not what the payload says (ingest and the live feed both check)."""
    if birth.gateway != address.gateway or birth.site != address.site:
        raise ContractError(Reason.TOPIC_MISMATCH, "birth names another gateway or site")


def _gateway_of(topic: str) -> str | None:
    parts = topic.split("/")
    return parts[-2] if len(parts) >= 2 and is_valid_id(parts[-2]) else None
