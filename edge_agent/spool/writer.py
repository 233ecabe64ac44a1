"""Writes the current boot's batches into the spool: closed ones once, open ones whenever
they grew (so every reading is in the next COMMIT, long before its batch is full)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from edge_agent.batcher import OpenBatch
from edge_agent.spool.store import SpoolStore
from shared.messages import Reading, TelemetryBatch

encode_readings: Final = msgspec.json.Encoder().encode


class BatchWriter:
    """Remembers how much of each open batch is written, to skip unchanged ones."""

    def __init__(self) -> None:
        self._written_open: dict[int, int] = {}  # open seq -> readings written

    def reset(self) -> None:
        self._written_open.clear()

    def write(
        self,
        store: SpoolStore,
        ordinal: int,
        closed: Iterable[TelemetryBatch],
        open_batches: Sequence[OpenBatch],
        wall_ms: int,
    ) -> tuple[list[int], list[int]]:
        """Put the batches in the pending transaction; returns (closed seqs, open seqs)."""
        closed_seqs: list[int] = []
        for batch in closed:
            store.put_batch(
                ordinal,
                batch.seq,
                encode_readings(batch.readings),
                len(batch.readings),
                closed=True,
                historical=batch.historical,
                clock_step_ms=batch.clock_step_ms,
                created_ms=wall_ms,
            )
            self._written_open.pop(batch.seq, None)
            closed_seqs.append(batch.seq)
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
        return closed_seqs, opened


def count_by_signal(readings: Iterable[Reading]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in readings:
        counts[r.signal] = counts.get(r.signal, 0) + 1
    return counts
