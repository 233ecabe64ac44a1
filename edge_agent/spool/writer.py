"""Writes the current boot's batches into the spool: closed ones once, open ones whenever
they grew (so every reading is in the next COMMIT, long before its batch is full).

Closed batches are held here until their COMMIT succeeded: a transaction SQLite rolled back
(disk full, I/O error) is written again from them and from the batcher's open batches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from edge_agent.batcher import OpenBatch
from edge_agent.spool.store import SpoolStore
from shared.messages import Reading, TelemetryBatch

encode_readings: Final = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class _Held:
    """A closed batch not yet committed: its payload, not its reading objects (memory)."""

    payload: bytes
    readings: int
    historical: bool
    clock_step_ms: int
    created_ms: int


class BatchWriter:
    """Remembers what of the current transaction is written, and what is not yet committed."""

    def __init__(self) -> None:
        self._written_open: dict[int, int] = {}  # open seq -> readings written
        self._unsaved: dict[int, _Held] = {}  # seq -> closed batch, until committed
        self._written_closed: set[int] = set()  # unsaved seqs in the pending transaction
        self.unsaved_bytes = 0

    def reset(self) -> None:
        """A fresh spool file: nothing of it is written yet; closed batches not committed are
        the caller's to account for (they were in the file that is gone)."""
        self._written_open.clear()
        self._unsaved.clear()
        self._written_closed.clear()
        self.unsaved_bytes = 0

    def lost(self) -> None:
        """The pending transaction was rolled back: everything is to be written again."""
        self._written_open.clear()
        self._written_closed.clear()

    def saved(self) -> None:
        """The pending transaction was committed."""
        self._unsaved.clear()
        self._written_closed.clear()
        self.unsaved_bytes = 0

    def unsaved_seqs(self) -> list[int]:
        return list(self._unsaved)

    def unsaved_readings(self) -> int:
        return sum(h.readings for h in self._unsaved.values())

    def shift_created(self, step_ms: int) -> None:
        """The wall clock stepped: held batches keep their age (as the spool's do)."""
        for seq, h in self._unsaved.items():
            self._unsaved[seq] = _Held(
                h.payload, h.readings, h.historical, h.clock_step_ms, h.created_ms + step_ms
            )

    def hold(self, closed: Iterable[TelemetryBatch], wall_ms: int) -> list[TelemetryBatch]:
        """Keep closed batches until committed (without writing them); returns them."""
        batches = list(closed)
        for batch in batches:
            payload = encode_readings(batch.readings)
            self._unsaved[batch.seq] = _Held(
                payload, len(batch.readings), batch.historical, batch.clock_step_ms, wall_ms
            )
            self.unsaved_bytes += len(payload)
        return batches

    def write(
        self, store: SpoolStore, ordinal: int, open_batches: Sequence[OpenBatch], wall_ms: int
    ) -> list[int]:
        """Put held closed batches and grown open ones in the pending transaction; returns
        the open seqs written."""
        for seq, h in self._unsaved.items():
            if seq in self._written_closed:
                continue
            store.put_batch(
                ordinal,
                seq,
                h.payload,
                h.readings,
                closed=True,
                historical=h.historical,
                clock_step_ms=h.clock_step_ms,
                created_ms=h.created_ms,
            )
            self._written_open.pop(seq, None)
            self._written_closed.add(seq)
        opened: list[int] = []
        for ob in open_batches:
            if self._written_open.get(ob.seq) == len(ob.readings):
                continue
            store.put_batch(
                ordinal,
                ob.seq,
                encode_readings(ob.readings),
                len(ob.readings),
                closed=False,
                historical=ob.historical,
                clock_step_ms=ob.clock_step_ms,
                created_ms=wall_ms,
            )
            self._written_open[ob.seq] = len(ob.readings)
            opened.append(ob.seq)
        return opened


def count_by_signal(readings: Iterable[Reading]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in readings:
        counts[r.signal] = counts.get(r.signal, 0) + 1
    return counts
