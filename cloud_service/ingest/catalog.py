"""What each gateway measures, learned from its retained birth message.

In memory for now; the metadata store (ingest issue) persists it. Tags come from here so a
reading's series (site, gateway, signal, sku, location, line) is the same on every write,
which is what makes replays idempotent in InfluxDB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.messages import Birth, SignalSpec

UNCLASSIFIED = "unclassified"  # measurement for readings of signals no birth has announced


@dataclass(slots=True)
class SignalCatalog:
    _signals: dict[tuple[str, str], dict[str, SignalSpec]] = field(default_factory=dict)
    births: int = 0

    def learn(self, site: str, birth: Birth) -> None:
        self._signals[(site, birth.gateway)] = {s.id: s for s in birth.signals}
        self.births += 1

    def spec(self, site: str, gateway: str, signal: str) -> SignalSpec | None:
        signals = self._signals.get((site, gateway))
        return signals.get(signal) if signals else None

    def signals_of(self, site: str, gateway: str) -> dict[str, SignalSpec]:
        return dict(self._signals.get((site, gateway), {}))
