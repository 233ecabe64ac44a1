"""The event queue that orders everything the world does in simulated time.

Events at the same millisecond run in the order they were scheduled (a sequence number breaks
ties), so a run is reproducible. An entity whose plans change (a line that fails before its
next lot is done) does not remove its old event: it bumps a version and the stale event, when
popped, sees a different version and does nothing.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count

Action = Callable[[int], None]


class EventQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Action]] = []
        self._seq = count()

    def schedule(self, t_ms: int, action: Action) -> None:
        heapq.heappush(self._heap, (t_ms, next(self._seq), action))

    def next_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, t_ms: int) -> tuple[int, Action] | None:
        """The earliest event at or before ``t_ms``, removed from the queue; else ``None``."""
        if self._heap and self._heap[0][0] <= t_ms:
            when, _, action = heapq.heappop(self._heap)
            return when, action
        return None

    def __len__(self) -> int:
        return len(self._heap)
