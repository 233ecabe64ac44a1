"""Which batches of each gateway boot are stored: the basis of end-to-end acks.

Pure state, no I/O. A gateway numbers its batches 1, 2, 3... per boot and deletes spooled
data only when the cloud acks the highest *contiguous* seq stored, so a batch that was lost
on the way (or not yet redelivered) holds the ack back until it arrives. Each batch also says
which seq it still holds un-acked (``first_unacked``), so a cloud that restarted without this
state resumes from there instead of waiting for batches the gateway already deleted.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

DEFAULT_MAX_STREAMS: Final = 100_000  # (gateway, boot) pairs remembered; oldest evicted first
DEFAULT_MAX_PENDING: Final = 100_000  # out-of-order seqs remembered per stream


@dataclass(slots=True)
class _Stream:
    contiguous: int = 0  # every seq <= this is stored
    pending: set[int] = field(default_factory=set)  # stored seqs beyond a gap


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing one batch changed."""

    ack: int  # highest contiguous seq now stored for the stream (0: none yet)
    duplicate: bool  # this seq was stored before (a redelivery or a replay)
    missing: int  # seqs between ``ack`` and the highest stored that have not arrived


@dataclass(slots=True)
class SequenceTracker:
    max_streams: int = DEFAULT_MAX_STREAMS
    max_pending: int = DEFAULT_MAX_PENDING
    duplicates: int = 0
    _streams: OrderedDict[tuple[str, str], _Stream] = field(default_factory=OrderedDict)

    def stored(self, gateway: str, boot: str, seq: int, first_unacked: int = 1) -> Stored:
        """Record that batch ``seq`` of (gateway, boot) is durably stored."""
        key = (gateway, boot)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
            if len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(key)
        if first_unacked - 1 > stream.contiguous:
            stream.contiguous = first_unacked - 1
            stream.pending = {s for s in stream.pending if s > stream.contiguous}
        duplicate = seq <= stream.contiguous or seq in stream.pending
        if duplicate:
            self.duplicates += 1
        else:
            stream.pending.add(seq)
        while stream.contiguous + 1 in stream.pending:
            stream.contiguous += 1
            stream.pending.discard(stream.contiguous)
        if len(stream.pending) > self.max_pending:
            # Never ack past a gap (the gateway would delete unsaved data). Forget the farthest
            # stored seq instead: the gateway still holds it un-acked and resends it later, and
            # rewriting it is harmless because device timestamps make writes idempotent.
            stream.pending.discard(max(stream.pending))
        missing = (
            (max(stream.pending) - stream.contiguous - len(stream.pending)) if stream.pending else 0
        )
        return Stored(ack=stream.contiguous, duplicate=duplicate, missing=missing)

    def ack_for(self, gateway: str, boot: str) -> int:
        stream = self._streams.get((gateway, boot))
        return stream.contiguous if stream else 0
