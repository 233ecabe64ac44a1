"""Pure exponential backoff for reconnecting sources (times in seconds, passed in)."""

from __future__ import annotations


class Backoff:
    """After a failure, wait ``min_s``, doubling per further failure up to ``max_s``."""

    def __init__(self, min_s: float, max_s: float) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {min_s}, {max_s}")
        self.min_s = min_s
        self.max_s = max_s
        self._delay = min_s
        self._next_at = float("-inf")
        self.failures = 0  # consecutive

    def ready(self, now: float) -> bool:
        """Whether an attempt may be made now."""
        return now >= self._next_at

    def failed(self, now: float) -> float:
        """Record a failed attempt; returns when the next one may be made."""
        self.failures += 1
        self._next_at = now + self._delay
        self._delay = min(self._delay * 2, self.max_s)
        return self._next_at

    def succeeded(self) -> None:
        self.failures = 0
        self._delay = self.min_s
        self._next_at = float("-inf")
