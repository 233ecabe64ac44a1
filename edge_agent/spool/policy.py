"""Pure spool policy: when the spool is over its bounds, what it gives up, and the ledger of
every reading given up, per signal and reason. No I/O; the store carries the decisions out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from edge_agent.config import DropPolicy, SpoolConfig
from shared.messages import Reading


class DropReason(StrEnum):
    """Why readings left the spool without a cloud ack (stable strings: status and docs)."""

    SPOOL_FULL = "spool_full"  # over max_bytes
    EXPIRED = "expired"  # older than max_age_s
    SPOOL_CORRUPT = "spool_corrupt"  # in a spool file found corrupt at run time (not per signal)
    SPOOL_ERROR = "spool_error"  # refused while the spool could not be written (disk full)


@dataclass(frozen=True, slots=True)
class SpoolLimits:
    max_bytes: int
    max_age_ms: int
    policy: DropPolicy = DropPolicy.DROP_OLDEST

    @classmethod
    def from_config(cls, spool: SpoolConfig) -> SpoolLimits:
        return cls(spool.max_bytes, round(spool.max_age_s * 1000), spool.policy)

    def admits(self, stored_bytes: int, incoming_bytes: int) -> bool:
        """Whether new readings may enter (always, under drop-oldest: the old ones go)."""
        return (
            self.policy is DropPolicy.DROP_OLDEST or stored_bytes + incoming_bytes <= self.max_bytes
        )

    def excess_bytes(self, stored_bytes: int) -> int:
        """Bytes drop-oldest must free now (0: within bounds, or the policy keeps the old)."""
        if self.policy is not DropPolicy.DROP_OLDEST:
            return 0
        return max(0, stored_bytes - self.max_bytes)

    def expiry_cutoff_ms(self, now_wall_ms: int) -> int:
        """Batches created before this are expired."""
        return now_wall_ms - self.max_age_ms


@dataclass(frozen=True, slots=True)
class BatchSize:
    """A candidate for dropping, in spool order (oldest first)."""

    key: int
    nbytes: int


def plan_size_drops(excess_bytes: int, oldest_first: Iterable[BatchSize]) -> list[int]:
    """The keys of the oldest batches whose removal frees at least ``excess_bytes``."""
    keys: list[int] = []
    freed = 0
    if excess_bytes <= 0:
        return keys
    for batch in oldest_first:
        keys.append(batch.key)
        freed += batch.nbytes
        if freed >= excess_bytes:
            break
    return keys


@dataclass(slots=True)
class DropLedger:
    """Readings dropped, per signal and per reason; plus reason totals not tied to a signal."""

    by_signal: dict[str, dict[str, int]] = field(default_factory=dict)
    unattributed: dict[str, int] = field(default_factory=dict)

    def add(self, readings: Iterable[Reading], reason: DropReason) -> dict[str, int]:
        """Count ``readings``; returns this call's counts per signal."""
        counts: dict[str, int] = {}
        for r in readings:
            counts[r.signal] = counts.get(r.signal, 0) + 1
        self.merge(counts, reason)
        return counts

    def merge(self, counts: Mapping[str, int], reason: str) -> None:
        for signal, n in counts.items():
            per = self.by_signal.setdefault(signal, {})
            per[reason] = per.get(reason, 0) + n

    def add_unattributed(self, reason: DropReason, n: int) -> None:
        self.unattributed[reason] = self.unattributed.get(reason, 0) + n

    def per_signal(self) -> dict[str, int]:
        """Total per signal (what ``Birth.dropped`` carries)."""
        return {s: sum(per.values()) for s, per in self.by_signal.items()}

    def per_reason(self) -> dict[str, int]:
        out = dict(self.unattributed)
        for per in self.by_signal.values():
            for reason, n in per.items():
                out[reason] = out.get(reason, 0) + n
        return out

    def total(self) -> int:
        return sum(self.per_reason().values())

    def rows(self) -> Iterator[tuple[str, str, int]]:
        for signal, per in self.by_signal.items():
            for reason, n in per.items():
                yield signal, reason, n
