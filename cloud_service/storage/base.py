"""The narrow time-series interface the rest of the cloud service depends on.

Callers see "write lines, run a query, make sure the database exists": nothing about HTTP,
InfluxDB versions or authentication, so tests can substitute a fake and a different backend
only has to implement :class:`TimeSeriesStore`. Bad-point isolation is written against this
interface too (:func:`write_isolating`), because it needs nothing but ``write`` and
:class:`~.errors.WriteRejected`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import RejectedLine, WriteRejected


@dataclass(frozen=True, slots=True)
class Series:
    """One result series: ``values`` rows follow ``columns`` (``time`` first for SELECT)."""

    name: str
    tags: Mapping[str, str]
    columns: tuple[str, ...]
    values: Sequence[Sequence[Any]]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.values]

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


@dataclass(slots=True)
class WriteOutcome:
    """What :func:`write_isolating` stored and refused; ``requests`` is the HTTP cost."""

    written: int
    rejected: list[RejectedLine] = field(default_factory=list)
    requests: int = 0


class TimeSeriesStore(Protocol):
    """A store bound to one database (and optional retention policy) at construction."""

    async def write(self, lines: bytes | Sequence[str], *, precision: str = "ms") -> None:
        """Store line-protocol ``lines``; raise a :class:`~.errors.StorageError` subclass."""
        ...

    async def query(self, q: str, *, epoch: str = "ms") -> list[Series]:
        """Run ``q`` (InfluxQL) and return the series of all its statements."""
        ...

    async def ensure_database(self) -> None:
        """Create the database (and retention policy) if missing; idempotent."""
        ...

    async def ping(self) -> bool:
        """True if the server answers; never raises."""
        ...

    async def aclose(self) -> None: ...


async def write_isolating(
    store: TimeSeriesStore, lines: Sequence[str], *, precision: str = "ms"
) -> WriteOutcome:
    """Write ``lines`` so that bad lines are refused alone and good ones are all stored.

    On :class:`~.errors.WriteRejected` the batch is narrowed down: lines the server names are
    rejected directly (if the server proves the rest was stored, nothing is re-sent);
    otherwise the batch is split in halves. One bad line among ``n`` costs at most
    ``1 + 2*ceil(log2 n)`` requests; the loop always ends because every step rejects a line
    or shrinks the batch. Re-sending good lines is harmless: InfluxDB overwrites a point
    with the same series and timestamp. Other errors (server down, auth) propagate: the caller
    retries the whole batch later, which is idempotent for the same reason.
    """
    outcome = WriteOutcome(written=0)
    stack: list[list[int]] = [list(range(len(lines)))] if lines else []
    while stack:
        idx = stack.pop()
        outcome.requests += 1
        try:
            await store.write([lines[i] for i in idx], precision=precision)
        except WriteRejected as exc:
            _narrow(exc, idx, lines, outcome, stack)
        else:
            outcome.written += len(idx)
    outcome.rejected.sort(key=lambda r: r.index)
    return outcome


def _narrow(
    exc: WriteRejected,
    idx: list[int],
    lines: Sequence[str],
    outcome: WriteOutcome,
    stack: list[list[int]],
) -> None:
    reason = exc.server_message or str(exc)
    named = {e.index: e.error for e in exc.line_errors if 0 <= e.index < len(idx)}
    if named:
        for j in sorted(named):
            outcome.rejected.append(RejectedLine(lines[idx[j]], idx[j], named[j]))
        rest = [i for j, i in enumerate(idx) if j not in named]
        if exc.others_written:
            outcome.written += len(rest)
        elif rest:
            stack.append(rest)
    elif len(idx) == 1 or (exc.dropped is not None and exc.dropped >= len(idx)):
        # A single line, or the server says it dropped every point of the batch: no search.
        outcome.rejected.extend(RejectedLine(lines[i], i, reason) for i in idx)
    else:
        mid = len(idx) // 2
        stack.append(idx[mid:])
        stack.append(idx[:mid])  # popped first: keeps the original write order
