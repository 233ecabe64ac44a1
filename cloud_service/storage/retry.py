"""Pure retry policy: exponential backoff with full jitter, and ``Retry-After`` parsing.

Full jitter (a uniform draw in ``[0, min(cap, base * 2**attempt)]``) spreads the retries of
many writers that failed at the same moment, so a restarted server is not hit by a thundering
herd. No I/O here, so the policy is tested without sleeping.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class Backoff:
    """``max_retries`` retries after the first attempt; delays in seconds."""

    base_s: float = 0.2
    cap_s: float = 10.0
    max_retries: int = 5
    #: Upper bound on a server's ``Retry-After``, so a bogus "wait a day" cannot stall us.
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if not (self.base_s >= 0 and self.cap_s >= 0 and self.max_retry_after_s >= 0):
            raise ValueError("backoff delays must be >= 0")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the jittered delay after failed attempt ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # 2**attempt overflows floats near 1024; the cap is reached long before.
        exponent = min(attempt, 1023)
        return min(self.cap_s, self.base_s * math.ldexp(1.0, exponent))

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``.

        A server's ``Retry-After`` wins over the jittered delay (it knows its own load), bounded
        by ``max_retry_after_s``.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        return rng.uniform(0.0, self.ceiling(attempt))

    def should_retry(self, attempt: int) -> bool:
        """True if failed attempt ``attempt`` (0-based) may be followed by another."""
        return attempt < self.max_retries


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)
