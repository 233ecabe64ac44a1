"""The start-up rebuild's queries: InfluxQL naming signals by their identity tags, asked to
answer at most so many rows (influxd's ``max-row-limit`` counts a whole answer), retried once
when the store fails, and counted (:class:`Reads`) for the rebuild's report."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cloud_service.storage import influxql
from cloud_service.storage.base import Series, TimeSeriesStore
from cloud_service.storage.errors import QueryError, StorageError, StoreUnavailable

log = logging.getLogger(__name__)


#: Rows asked of influxd per answer, all series together: its ``[http] max-row-limit`` (0,
#: none, by default; 10,000 is common) counts the whole answer, not each series. An answer the
#: server truncates all the same is asked again for at most ``TRUNCATED_ROWS`` (under the
#: common limit), then half as many at each further truncation, for the rest of the rebuild.
QUERY_ROWS: Final = 100_000


TRUNCATED_ROWS: Final = 9_000


QUERY_SIGNALS: Final = 200  # signals named per query (its text grows with them)


RETRY_DELAY_S: Final = 0.2  # before a failed query's one retry


#: The tags that name a signal (see ``_id``). Trails are read grouped by these alone, so a
#: signal whose other tags changed over time (a ``location`` added or removed) comes back as
#: one series, its last value per bucket taken over all of its tag sets.
IDENTITY = ("site", "gateway", "signal")


@dataclass(slots=True)
class Reads:
    """What the reads of one rebuild learned and counted, shared by its queries."""

    rows: int = QUERY_ROWS  # rows asked per answer (lowered by a truncated one)
    queries: int = 0
    failed_reads: int = 0  # queries that failed twice (or could not be asked), left out
    skipped_signals: int = 0  # signals left without engine history by them

    def failed(self, what: str, signals: int, exc: StorageError) -> None:
        self.failed_reads += 1
        log.warning(
            "rebuild: a read of %s for %d signals failed and is left out (%s); "
            "the rest of the rebuild goes on", what, signals, exc,
        )  # fmt: skip

    def truncated(self, asked: int) -> None:
        """An answer of ``asked`` rows was cut by the server (``max-row-limit``)."""
        self.rows = min(self.rows, TRUNCATED_ROWS if asked > TRUNCATED_ROWS else asked // 2)


class Truncated(Exception):
    """The answer was cut by the server: ask again for fewer rows (``Reads.rows``)."""


def signal_filter(keys: Iterable[tuple[str, str, str]]) -> str:
    """``(site = .. AND gateway = .. AND signal = ..) OR ...``: the signals ``keys``."""
    return " OR ".join(
        "("
        + " AND ".join(
            f"{influxql.quote_ident(t, 'tag key')} = {influxql.quote_literal(v)}"
            for t, v in zip(IDENTITY, key, strict=True)
        )
        + ")"
        for key in keys
    )


async def query(store: TimeSeriesStore, reads: Reads, q: str, asked: int | None) -> list[Series]:
    """``q``, asked to answer at most ``asked`` rows (None: not known); a failure (a
    timeout, the store down) is retried once, a truncated answer raises :class:`Truncated`
    (ask for fewer)."""
    for attempt in (1, 2):
        reads.queries += 1
        try:
            return await store.query(q, epoch="ms")
        except QueryError as exc:
            if "truncated" not in str(exc):
                raise
            if asked is not None:
                reads.truncated(asked)
                if reads.rows < 1:
                    raise
            raise Truncated from exc
        except StoreUnavailable:
            if attempt == 2:
                raise
            await asyncio.sleep(RETRY_DELAY_S)
    raise AssertionError("unreachable")  # pragma: no cover
