"""The ingest core without I/O: what gets written, dead-lettered and acked."""

from __future__ import annotations

import json

from cloud_service.ingest.peers import StoredReport
from cloud_service.ingest.pipeline import Inbound, IngestCore
from shared.codec import encode
from shared.errors import Reason
from shared.messages import (
    Birth,
    GatewayState,
    Quality,
    Reading,
    SignalKind,
    SignalSpec,
    State,
    TelemetryBatch,
)
from shared.topics import Channel, TopicScheme

NOW = 1_790_000_000_000
SCHEME = TopicScheme()
TELEMETRY = SCHEME.topic("site-1", "gw-1", Channel.TELEMETRY)
BIRTH = SCHEME.topic("site-1", "gw-1", Channel.BIRTH)


def birth() -> bytes:
    spec = SignalSpec(
        id="wh2.a113.level", kind=SignalKind.STOCK_LEVEL, unit="pcs", sku="A-113", location="W2"
    )
    return encode(
        Birth(
            gateway="gw-1",
            site="site-1",
            boot="b1",
            agent_version="0.1.0",
            config_hash="abc",
            started_ms=NOW,
            signals=[spec],
        )
    )


def batch(seq: int, readings: list[Reading], **kw: object) -> bytes:
    return encode(TelemetryBatch(gateway="gw-1", boot="b1", seq=seq, readings=readings, **kw))  # type: ignore[arg-type]


def test_catalogued_signals_get_their_kind_and_tags() -> None:
    core = IngestCore(SCHEME)
    core.prepare([Inbound(BIRTH, birth(), NOW)])
    out = core.prepare([Inbound(TELEMETRY, batch(1, [Reading("wh2.a113.level", NOW, 12.5)]), NOW)])
    assert out.lines == [
        "stock_level,gateway=gw-1,location=W2,signal=wh2.a113.level,site=site-1,sku=A-113"
        f" value=12.5,q=0i {NOW}"
    ]
    assert out.dead == []


def test_unknown_signals_are_written_unclassified_and_counted() -> None:
    core = IngestCore(SCHEME)
    out = core.prepare([Inbound(TELEMETRY, batch(1, [Reading("x", NOW, 1.0)]), NOW)])
    assert out.lines == [f"unclassified,gateway=gw-1,signal=x,site=site-1 value=1.0,q=0i {NOW}"]
    assert core.mapper.unclassified == 1


def test_comm_failure_is_written_as_quality_only() -> None:
    core = IngestCore(SCHEME)
    out = core.prepare(
        [Inbound(TELEMETRY, batch(1, [Reading("x", NOW, None, Quality.COMM_FAILURE)]), NOW)]
    )
    assert out.lines == [f"unclassified,gateway=gw-1,signal=x,site=site-1 q=3i {NOW}"]


def test_every_message_is_acked_and_bad_ones_dead_lettered() -> None:
    core = IngestCore(SCHEME)
    bad_topic = Inbound("flightdeck/v1/site-1/gw+1/telemetry", b"{}", NOW, token="t1")
    garbage = Inbound(TELEMETRY, b"\xff\x00", NOW, token="t2")
    other_gateway = Inbound(
        SCHEME.topic("site-1", "gw-2", Channel.TELEMETRY), batch(1, []), NOW, token="t3"
    )
    doc = json.loads(batch(1, [Reading("a", NOW, 1.0)]))
    doc["readings"].append(["b", NOW, float("nan"), 0])
    mixed = Inbound(TELEMETRY, json.dumps(doc).encode(), NOW, token="t4")
    out = core.prepare([bad_topic, garbage, other_gateway, mixed])
    assert out.tokens == ["t1", "t2", "t3", "t4"]
    assert [d.reason for d in out.dead] == [
        Reason.BAD_TOPIC,
        Reason.MALFORMED,
        Reason.TOPIC_MISMATCH,
        Reason.NON_FINITE,
    ]
    assert out.dead[1].raw == b"\xff\x00"
    assert out.dead[3].index == 1
    assert len(out.lines) == 1


def test_acks_follow_contiguous_storage_per_boot() -> None:
    core = IngestCore(SCHEME)
    first = core.prepare([Inbound(TELEMETRY, batch(s, []), NOW) for s in (1, 2, 4)])
    outcome = core.stored(first, NOW)
    assert [(site, a.boot, a.seq) for site, a in outcome.acks] == [("site-1", "b1", 2)]
    assert (outcome.gaps, outcome.filled, outcome.duplicates) == (1, 0, 0)
    second = core.prepare(
        [Inbound(TELEMETRY, batch(3, []), NOW), Inbound(TELEMETRY, batch(1, []), NOW)]
    )
    outcome = core.stored(second, NOW)
    assert [a.seq for _, a in outcome.acks] == [4]
    assert (outcome.gaps, outcome.filled, outcome.duplicates) == (0, 1, 1)


def test_a_peer_report_advances_the_ack_a_partial_view_holds_back() -> None:
    """Two workers split a gateway's batches: each holds odd or even seqs only."""
    odd, even = IngestCore(SCHEME), IngestCore(SCHEME)
    odd_out = odd.stored(odd.prepare([Inbound(TELEMETRY, batch(s, []), NOW) for s in (1, 3)]), NOW)
    even_out = even.stored(
        even.prepare([Inbound(TELEMETRY, batch(s, []), NOW) for s in (2, 4)]), NOW
    )
    assert [a.seq for _, a in odd_out.acks] == [1]
    assert even_out.acks == []  # seq 1 is not here
    report = StoredReport(worker="w2", streams=even_out.report)
    assert [(site, a.seq) for site, a in odd.merge(report, NOW)] == [("site-1", 4)]
    back = StoredReport(worker="w1", streams=odd_out.report)
    assert [a.seq for _, a in even.merge(back, NOW)] == [4]
    assert odd.merge(report, NOW) == []  # nothing new: no ack to publish


def test_births_and_states_become_registry_records() -> None:
    core = IngestCore(SCHEME)
    state = encode(State(state=GatewayState.OFFLINE, boot="b1", ts=NOW))
    out = core.prepare(
        [
            Inbound(BIRTH, birth(), NOW),
            Inbound(SCHEME.topic("site-1", "gw-1", Channel.STATE), state, NOW),
        ]
    )
    assert [(b.site, b.birth.gateway, b.received_ms) for b in out.births] == [
        ("site-1", "gw-1", NOW)
    ]
    assert [(s.gateway, s.state.state) for s in out.states] == [("gw-1", GatewayState.OFFLINE)]


def test_a_line_knows_the_message_it_came_from() -> None:
    core = IngestCore(SCHEME)
    other = SCHEME.topic("site-1", "gw-2", Channel.TELEMETRY)
    two = encode(
        TelemetryBatch(gateway="gw-2", boot="b", seq=1, readings=[Reading("x", NOW, 1.0)] * 2)
    )
    out = core.prepare(
        [Inbound(TELEMETRY, batch(1, [Reading("x", NOW, 1.0)]), NOW), Inbound(other, two, NOW)]
    )
    assert [out.source_of(i) for i in range(3)] == [
        (TELEMETRY, "gw-1"),
        (other, "gw-2"),
        (other, "gw-2"),
    ]


def test_a_birth_for_another_gateway_is_refused() -> None:
    core = IngestCore(SCHEME)
    out = core.prepare([Inbound(SCHEME.topic("site-1", "gw-9", Channel.BIRTH), birth(), NOW)])
    assert [d.reason for d in out.dead] == [Reason.TOPIC_MISMATCH]


def test_cleared_retained_messages_are_ignored() -> None:
    core = IngestCore(SCHEME)
    out = core.prepare([Inbound(BIRTH, b"", NOW, token="t")])
    assert out.dead == []
    assert out.tokens == ["t"]
