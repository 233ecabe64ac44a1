"""The alert link's pure bookkeeping: which alert states a broker retains per gateway and the
index to publish (:class:`IndexBook`), and how often to repeat an error or the sync marker.
No I/O: :mod:`.mqtt_delivery` feeds it what the broker holds and what it publishes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from shared.messages import Alert, AlertIndex

GatewayKey = tuple[str, str]  # (site, gateway)
MARKER_BACKOFF_MAX_S: Final = 60


@dataclass(slots=True)
class _GatewayBook:
    alerts: dict[str, int] = field(default_factory=dict)  # open alert id -> rev retained
    rev: int = 0  # highest revision given out (or seen) for this gateway
    retained: AlertIndex | None = None  # the index the broker holds, as far as we know


class IndexBook:
    """Per gateway: which alert states are retained on the broker, their revisions, and the
    index to publish (pure; the link feeds it what the broker holds and what it publishes)."""

    def __init__(self) -> None:
        self._gateways: dict[GatewayKey, _GatewayBook] = {}

    def _book(self, key: GatewayKey) -> _GatewayBook:
        book = self._gateways.get(key)
        if book is None:
            book = self._gateways[key] = _GatewayBook()
        return book

    # what the broker holds (the retained messages replayed at subscribe) ------------------
    def load_alert(self, key: GatewayKey, alert_id: str, rev: int) -> None:
        book = self._book(key)
        book.alerts[alert_id] = rev
        book.rev = max(book.rev, rev)

    def load_index(self, key: GatewayKey, index: AlertIndex) -> None:
        book = self._book(key)
        book.retained = index
        book.rev = max(book.rev, index.rev)

    def seen_gateway(self, key: GatewayKey) -> bool:
        """A gateway exists (its ``state``); True when it was not known before."""
        if key in self._gateways:
            return False
        self._gateways[key] = _GatewayBook()
        return True

    # what the link publishes ---------------------------------------------------------------
    def next_rev(self, key: GatewayKey, now_ms: int) -> int:
        """A new revision for a state of ``key``'s alerts: above every earlier one, and at least
        ``now_ms`` (so it keeps growing even if the broker lost what was retained)."""
        book = self._book(key)
        book.rev = max(book.rev + 1, now_ms)
        return book.rev

    def retained_state(self, key: GatewayKey, alert_id: str, rev: int) -> None:
        self._book(key).alerts[alert_id] = rev

    def deleted(self, key: GatewayKey, alert_id: str) -> None:
        self._book(key).alerts.pop(alert_id, None)

    def index(self, key: GatewayKey, now_ms: int) -> AlertIndex:
        book = self._book(key)
        return AlertIndex(gateway=key[1], rev=book.rev, ts=now_ms, alerts=dict(book.alerts))

    def published_index(self, key: GatewayKey, index: AlertIndex) -> None:
        self._book(key).retained = index

    def stale(self) -> list[GatewayKey]:
        """Gateways whose retained index (if any) is not what the book says."""
        return sorted(
            key
            for key, book in self._gateways.items()
            if book.retained is None
            or book.retained.alerts != book.alerts
            or book.retained.rev < book.rev
        )

    def missing(self, key: GatewayKey, plant: Iterable[Alert]) -> list[Alert]:
        """Of ``plant`` (the alerts of ``key`` the lifecycle holds open), those the broker does
        not retain (it lost them: restarted inside its autosave window, or wiped): each must
        be republished before any index of ``key``, which would otherwise omit it."""
        book = self._gateways.get(key)
        held = {} if book is None else book.alerts
        return [a for a in plant if a.id not in held and not a.closed]


class ErrorGate:
    """Which of a repeated error to log (pure): the first of each kind, then at most one per
    ``every_s`` (a broker that refuses the link on every reconnect must not flood the log)."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def allow(self, what: str, now_s: float) -> bool:
        last = self._last.get(what)
        if last is not None and now_s - last < self.every_s:
            return False
        self._last[what] = now_s
        return True

    def forget(self) -> None:
        self._last.clear()


def marker_delay_s(refusals: int) -> float:
    """How long to wait after a connect before sending the sync marker, after ``refusals``
    consecutive refused or unanswered ones: at once first, then 1, 2, 4 … up to 60 s (a broker
    that drops the connection on a refused publish would otherwise be redialled every second)."""
    if refusals <= 0:
        return 0.0
    return float(min(2 ** (refusals - 1), MARKER_BACKOFF_MAX_S))
