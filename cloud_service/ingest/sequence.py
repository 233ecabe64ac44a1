"""Which batches of each gateway boot are stored: the basis of end-to-end acks.

Pure state, no I/O. A gateway numbers its batches 1, 2, 3... per boot and deletes spooled
data only when the cloud acks the highest *contiguous* seq stored, so a batch that was lost
on the way (or not yet redelivered) holds the ack back until it arrives. Each batch also says
which seq it still holds un-acked (``first_unacked``), so a cloud that restarted without this
state resumes from there instead of waiting for batches the gateway already deleted.

A new boot id is a new stream starting at 1: nothing of the previous boot's numbering can
make it look gappy, and the old boot's stream stays, so a replay of its spooled batches
still fills its gaps. Counters per stream: ``duplicates`` (a batch stored again: redelivery
or replay), ``gaps`` (seqs seen missing when a later one arrived) and ``filled`` (those that
arrived afterwards). ``missing`` is what is outstanding now. With several workers on a shared
subscription each sees gaps until its peers' reports arrive (:meth:`merge`): transient gaps
are normal there, a ``missing`` that stays above zero is not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

DEFAULT_MAX_STREAMS: Final = 100_000  # (gateway, boot) pairs remembered; oldest evicted first
DEFAULT_MAX_PENDING: Final = 100_000  # out-of-order seqs remembered per stream


@dataclass(slots=True)
class _Stream:
    contiguous: int = 0  # every seq <= this is stored
    pending: set[int] = field(default_factory=set)  # stored seqs beyond a gap
    highest: int = 0
    duplicates: int = 0
    gaps: int = 0
    filled: int = 0

    @property
    def missing(self) -> int:
        return (self.highest - self.contiguous - len(self.pending)) if self.pending else 0


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing one batch changed."""

    ack: int  # highest contiguous seq now stored for the stream (0: none yet)
    duplicate: bool  # this seq was stored before (a redelivery or a replay)
    missing: int  # seqs between ``ack`` and the highest stored that have not arrived
    new_gap: int = 0  # seqs this batch skipped over (now missing)
    filled: bool = False  # this batch filled a gap


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """One stream's state, for the metadata store and for restoring after a restart."""

    gateway: str
    boot: str
    contiguous: int
    pending: tuple[int, ...]
    duplicates: int
    gaps: int
    filled: int
    updated_ms: int = 0


@dataclass(slots=True)
class SequenceTracker:
    max_streams: int = DEFAULT_MAX_STREAMS
    max_pending: int = DEFAULT_MAX_PENDING
    duplicates: int = 0
    gaps: int = 0
    filled: int = 0
    _streams: OrderedDict[tuple[str, str], _Stream] = field(default_factory=OrderedDict)
    _dirty: set[tuple[str, str]] = field(default_factory=set)

    def _stream(self, gateway: str, boot: str) -> _Stream:
        key = (gateway, boot)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
            if len(self._streams) > self.max_streams:
                old, _ = self._streams.popitem(last=False)
                self._dirty.discard(old)
        else:
            self._streams.move_to_end(key)
        self._dirty.add(key)
        return stream

    def stored(self, gateway: str, boot: str, seq: int, first_unacked: int = 1) -> Stored:
        """Record that batch ``seq`` of (gateway, boot) is durably stored by this worker."""
        stream = self._stream(gateway, boot)
        self._skip_to(stream, first_unacked - 1)
        duplicate = seq <= stream.contiguous or seq in stream.pending
        new_gap, filled = 0, False
        if duplicate:
            stream.duplicates += 1
            self.duplicates += 1
        else:
            new_gap, filled = self._add(stream, seq)
        return Stored(stream.contiguous, duplicate, stream.missing, new_gap, filled)

    def merge(self, gateway: str, boot: str, contiguous: int, seqs: Iterable[int]) -> int:
        """A peer worker stored ``seqs`` and everything up to ``contiguous``; returns the ack.

        A peer's contiguous prefix is as safe as the gateway's own ``first_unacked``: every
        seq in it was stored by someone. Duplicates are counted by whoever stored them.
        """
        stream = self._stream(gateway, boot)
        self._skip_to(stream, contiguous)
        for seq in seqs:
            if seq > stream.contiguous and seq not in stream.pending:
                self._add(stream, seq)
        return stream.contiguous

    def _skip_to(self, stream: _Stream, contiguous: int) -> None:
        if contiguous > stream.contiguous:
            stream.contiguous = contiguous
            stream.pending = {s for s in stream.pending if s > contiguous}
            stream.highest = max(stream.highest, contiguous)
            self._advance(stream)

    def _add(self, stream: _Stream, seq: int) -> tuple[int, bool]:
        new_gap = max(0, seq - stream.highest - 1)
        filled = seq < stream.highest
        stream.gaps += new_gap
        self.gaps += new_gap
        if filled:
            stream.filled += 1
            self.filled += 1
        stream.highest = max(stream.highest, seq)
        stream.pending.add(seq)
        self._advance(stream)
        if len(stream.pending) > self.max_pending:
            # Never ack past a gap (the gateway would delete unsaved data). Forget the farthest
            # stored seq instead: the gateway still holds it un-acked and resends it later, and
            # rewriting it is harmless because device timestamps make writes idempotent.
            stream.pending.discard(max(stream.pending))
        return new_gap, filled

    @staticmethod
    def _advance(stream: _Stream) -> None:
        while stream.contiguous + 1 in stream.pending:
            stream.contiguous += 1
            stream.pending.discard(stream.contiguous)

    def ack_for(self, gateway: str, boot: str) -> int:
        stream = self._streams.get((gateway, boot))
        return stream.contiguous if stream else 0

    def missing(self) -> int:
        """Seqs outstanding behind stored ones, over all streams."""
        return sum(s.missing for s in self._streams.values())

    def take_dirty(self, now_ms: int) -> list[StreamSnapshot]:
        """Snapshots of the streams changed since the last call (for a periodic save)."""
        out = [self._snapshot(key, now_ms) for key in self._dirty if key in self._streams]
        self._dirty.clear()
        return out

    def unsaved(self, snapshots: Iterable[StreamSnapshot]) -> None:
        """Snapshots taken by :meth:`take_dirty` that could not be saved: pending again."""
        for snap in snapshots:
            key = (snap.gateway, snap.boot)
            if key in self._streams:
                self._dirty.add(key)

    def snapshot(self, gateway: str, boot: str, now_ms: int = 0) -> StreamSnapshot | None:
        return self._snapshot((gateway, boot), now_ms) if (gateway, boot) in self._streams else None

    def _snapshot(self, key: tuple[str, str], now_ms: int) -> StreamSnapshot:
        s = self._streams[key]
        return StreamSnapshot(
            key[0], key[1], s.contiguous, tuple(sorted(s.pending)), s.duplicates, s.gaps,
            s.filled, now_ms,
        )  # fmt: skip

    def restore(self, snapshots: Iterable[StreamSnapshot]) -> None:
        """Load saved streams (oldest first); counters continue from their saved values."""
        for snap in snapshots:
            pending = set(snap.pending)
            self._streams[(snap.gateway, snap.boot)] = _Stream(
                contiguous=snap.contiguous,
                pending=pending,
                highest=max(pending, default=snap.contiguous),
                duplicates=snap.duplicates,
                gaps=snap.gaps,
                filled=snap.filled,
            )
            if len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
