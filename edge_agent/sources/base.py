"""The one interface every source implements, and the helpers they share.

A source reads a fixed set of signals from one device or system. It never goes silent and never
raises for a communication failure: a signal it cannot read comes back as a reading with
quality ``COMM_FAILURE`` (or ``BAD`` when the device answered with an error) and a null value,
so the cloud sees the outage as data. Exceptions out of :meth:`Source.read` are bugs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from shared.codec import make_reading
from shared.messages import Quality, Reading

if TYPE_CHECKING:
    from edge_agent.config import SignalConfig


class Source(Protocol):
    """A device or system the agent polls."""

    async def read(self, now_ms: int) -> list[Reading]:
        """One reading per signal of this source, all stamped ``now_ms`` (epoch ms, UTC)."""
        ...

    async def close(self) -> None:
        """Release connections; the source must not be read afterwards."""
        ...


def failed_readings(signals: Iterable[str], now_ms: int, quality: Quality) -> list[Reading]:
    """A null reading of ``quality`` (COMM_FAILURE, BAD) for each signal."""
    return [make_reading(signal, now_ms, None, quality) for signal in signals]


def check_signals(
    source_id: str, signals: Iterable[SignalConfig], *, needs: str | None = None, what: str = ""
) -> None:
    """Refuse signals of another source, or lacking the address field ``needs`` (named ``what``)."""
    signals = list(signals)
    foreign = [s.id for s in signals if s.source != source_id]
    if foreign:
        raise ValueError(f"signals {foreign} do not belong to source {source_id!r}")
    if needs is not None:
        missing = [s.id for s in signals if getattr(s, needs) is None]
        if missing:
            raise ValueError(f"signals {missing} have no {what or needs}")
