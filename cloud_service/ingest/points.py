"""Readings to line protocol: one measurement per signal kind, tags from the catalog.

``value`` is a float field and ``q`` the quality code as an integer field; a reading without a
value (comm failure) is written with ``q`` alone, so the outage itself is on record. Series
keys are escaped once per signal and cached: the per-reading cost is one f-string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cloud_service.ingest.catalog import UNCLASSIFIED, SignalCatalog
from cloud_service.storage.line_protocol import series_key
from shared.messages import Reading

PRECISION: Final = "ms"
_MAX_CACHED_KEYS: Final = 1_000_000


@dataclass(slots=True)
class PointMapper:
    catalog: SignalCatalog
    unclassified: int = 0  # readings written under UNCLASSIFIED (no birth seen yet)
    _keys: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def forget(self, site: str, gateway: str) -> None:
        """Drop cached keys of a gateway whose catalog changed (a new birth)."""
        for key in [k for k in self._keys if k[0] == site and k[1] == gateway]:
            del self._keys[key]

    def key(self, site: str, gateway: str, signal: str) -> str:
        cache_key = (site, gateway, signal)
        key = self._keys.get(cache_key)
        if key is None:
            spec = self.catalog.spec(site, gateway, signal)
            tags = {"site": site, "gateway": gateway, "signal": signal}
            if spec is None:
                measurement = UNCLASSIFIED
            else:
                measurement = spec.kind.value
                tags.update(sku=spec.sku or "", location=spec.location or "", line=spec.line or "")
            key = series_key(measurement, tags)
            if spec is not None:  # unknown signals are re-resolved once their birth arrives
                if len(self._keys) >= _MAX_CACHED_KEYS:
                    self._keys.clear()
                self._keys[cache_key] = key
        return key

    def lines(self, site: str, gateway: str, readings: list[Reading]) -> list[str]:
        out: list[str] = []
        append = out.append
        key_of = self.key
        for r in readings:
            key = key_of(site, gateway, r.signal)
            if key.startswith(UNCLASSIFIED):
                self.unclassified += 1
            if r.value is None:
                append(f"{key} q={int(r.quality)}i {r.ts}")
            else:
                append(f"{key} value={r.value!r},q={int(r.quality)}i {r.ts}")
        return out
