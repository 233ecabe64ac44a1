"""Stored-batch reports between the ingest workers of one share group.

The broker splits a gateway's batches between the workers of a shared subscription, so no
worker alone sees a contiguous run of seqs and none could ack past its first gap. After each
write a worker publishes which seqs it stored (and its contiguous prefix per stream, so a
lost report is healed by the next one) on a topic outside the gateways' tree; its peers
merge them into their trackers. A report is sent only after the write is durable, so merging
never lets an ack cover data that is not stored. QoS 0 with MQTT 5 "no local": losing one
only delays an ack, and a worker never hears its own.
"""

from __future__ import annotations

from typing import Final

import msgspec

from shared.ids import Id, check_id
from shared.messages import Seq

#: Not an id (ids start with a letter or digit): can never collide with a site level.
_LEVEL: Final = "_ingest"


class StreamReport(msgspec.Struct, array_like=True, frozen=True):
    site: Id
    gateway: Id
    boot: Id
    contiguous: Seq
    seqs: list[Seq]


class StoredReport(msgspec.Struct, frozen=True):
    worker: Id
    streams: list[StreamReport]


def report_topic(prefix: str, group: str) -> str:
    return f"{prefix}/{_LEVEL}/{check_id(group, 'share group')}/stored"


_decoder: Final = msgspec.json.Decoder(StoredReport)
_encoder: Final = msgspec.json.Encoder()


def encode_report(report: StoredReport) -> bytes:
    return _encoder.encode(report)


def decode_report(payload: bytes | bytearray) -> StoredReport | None:
    """None for anything that is not a valid report (ignored: reports are advisory)."""
    try:
        return _decoder.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError is a subclass
        return None
