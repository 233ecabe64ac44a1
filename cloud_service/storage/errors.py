"""Storage errors that say what a caller should do next, not which HTTP library failed.

Callers branch on the class: retry later (:class:`StoreUnavailable`), fix configuration
(:class:`StoreAuthError`, :class:`TargetNotFound`), drop or quarantine data
(:class:`WriteRejected`) or fix the query (:class:`QueryError`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

_PARTIAL: Final = "partial write: "
_DROPPED_RE: Final = re.compile(r" dropped=(\d+)\Z")
_UNPARSABLE: Final = "unable to parse '"


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """One line the server refused, with its index in the batch that was sent."""

    line: str
    index: int
    error: str


class StorageError(Exception):
    """Base class; the structured fields are for logs and metrics."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        status: int | None = None,
        server_message: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.status = status
        self.server_message = server_message
        self.attempts = attempts


class StoreUnavailable(StorageError):
    """Connection refused, timeout, 5xx or 429 that outlasted the retries: try again later."""

    retryable = True


class StoreAuthError(StorageError):
    """401/403: wrong credentials or missing privileges; retrying cannot help."""


class TargetNotFound(StorageError):
    """The database or retention policy does not exist (call ``ensure_database()``)."""


class QueryError(StorageError):
    """The server refused a query (syntax, unknown function, truncated result...)."""

    def __init__(
        self,
        message: str,
        *,
        operation: str = "query",
        status: int | None = None,
        server_message: str | None = None,
        statement_id: int | None = None,
    ) -> None:
        super().__init__(message, operation=operation, status=status, server_message=server_message)
        self.statement_id = statement_id


class WriteRejected(StorageError):
    """400/413 on a write: the data, not the server, is at fault; never retry it as is.

    ``status`` is None when the answer could not be read because influxd echoed control
    characters from our data into its error header (see :mod:`.line_protocol`).

    InfluxDB 1.x may have stored part of the batch anyway ("partial write"). ``line_errors``
    lists the lines the server named (indices into the batch sent); ``others_written`` is True
    only when the server's answer proves every other line was stored; ``dropped`` is the
    server's count of points refused after parsing (None when it gave none).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        server_message: str,
        line_errors: tuple[RejectedLine, ...] = (),
        partial: bool = False,
        dropped: int | None = None,
        others_written: bool = False,
        batch_size: int = 0,
    ) -> None:
        super().__init__(message, operation="write", status=status, server_message=server_message)
        self.line_errors = line_errors
        self.partial = partial
        self.dropped = dropped
        self.others_written = others_written
        self.batch_size = batch_size

    @classmethod
    def from_server(cls, status: int, message: str, lines: bytes | Sequence[str]) -> WriteRejected:
        """Read influxd's rejection text (formats seen in 1.6.7's ``/write`` handler)::

        partial write: unable to parse '<line>': <why>\\n... dropped=0  -> rest stored
        partial write: <why> dropped=N                    -> N unnamed points dropped
        unable to parse '<line>': <why>                   -> no line parsed, none stored
        field type conflict                               -> none stored (new shard)
        """
        text = message
        partial = text.startswith(_PARTIAL)
        if partial:
            text = text[len(_PARTIAL) :]
        dropped: int | None = None
        if m := _DROPPED_RE.search(text):
            dropped = int(m.group(1))
            text = text[: m.start()]
        line_errors: tuple[RejectedLine, ...] = ()
        others_written = False
        if status == 400 and _UNPARSABLE in text:
            batch = (
                lines.decode("utf-8", "replace").split("\n") if isinstance(lines, bytes) else lines
            )
            line_errors, all_named = _named_lines(text.split("\n"), batch)
            # Every segment named a line and nothing else was dropped: the rest is stored.
            others_written = all_named and bool(line_errors) and (dropped == 0 or not partial)
        return cls(
            f"write refused with HTTP {status}: {message}",
            status=status,
            server_message=message,
            line_errors=line_errors,
            partial=partial,
            dropped=dropped,
            others_written=others_written,
            batch_size=lines.count(b"\n") + 1 if isinstance(lines, bytes) else len(lines),
        )

    @property
    def line(self) -> str | None:
        """The first line the server named, if any."""
        return self.line_errors[0].line if self.line_errors else None

    @property
    def line_index(self) -> int | None:
        return self.line_errors[0].index if self.line_errors else None


def _named_lines(
    segments: list[str], batch: Sequence[str]
) -> tuple[tuple[RejectedLine, ...], bool]:
    """Map ``unable to parse '<line>': <why>`` segments to batch indices."""
    where: dict[str, list[int]] = {}
    for i, text in enumerate(batch):
        where.setdefault(text, []).append(i)
    found: list[RejectedLine] = []
    all_named = True
    for segment in segments:
        named = None
        if segment.startswith(_UNPARSABLE):
            rest = segment[len(_UNPARSABLE) :]
            end = rest.rfind("': ")
            while end >= 0 and named is None:  # longest match: the line may contain "': "
                if rest[:end] in where:
                    named = rest[:end]
                end = rest.rfind("': ", 0, end)
        if named is None:
            all_named = False
            continue
        found.extend(RejectedLine(named, i, segment) for i in where[named])
    return tuple(found), all_named
