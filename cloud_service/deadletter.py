"""Dead letters: every rejected message or reading, kept with its reason and raw bytes.

One narrow interface, :class:`DeadLetterStore`; the backend is the metadata store
(``cloud_service.metadata.deadletters``). ``put_many`` returns only once the letters are
durable, because ingest PUBACKs the message right after: a letter lost after its ack would
be a reading silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.errors import Reason


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: Reason
    detail: str
    topic: str
    gateway: str | None
    received_ms: int
    raw: bytes
    index: int | None = None  # position of the reading inside its batch, when one reading


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A letter as listed back; ``raw`` is the head of the payload when ``size`` exceeds it."""

    id: int
    reason: str
    detail: str
    topic: str
    gateway: str | None
    received_ms: int
    index: int | None
    size: int
    raw: bytes

    @property
    def truncated(self) -> bool:
        return len(self.raw) < self.size


class DeadLetterStore(Protocol):
    async def put_many(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` durably before returning (raise ``MetadataError`` otherwise)."""
        ...

    async def recent(
        self,
        *,
        reason: str | None = None,
        gateway: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[StoredDeadLetter]:
        """Newest first; page with ``before_id`` (the last id of the previous page)."""
        ...

    async def count_by_reason(self) -> dict[str, int]:
        """Letters currently kept, per reason (the store is bounded: old ones are evicted)."""
        ...
