"""Readings to line protocol: one measurement per signal kind, tags from the catalog.

``value`` is a float field and ``q`` the quality code as an integer field; a reading without a
value (comm failure) is written with ``q`` alone, so the outage itself is on record. Series
keys are escaped once per signal and cached per gateway: the per-reading cost is one dict
lookup and one f-string (this loop is the hottest of ingest, see ``bench/bench_ingest.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cloud_service.ingest.catalog import UNCLASSIFIED, SignalCatalog
from cloud_service.storage.line_protocol import series_key
from shared.messages import Quality, Reading

PRECISION: Final = "ms"
_MAX_CACHED_KEYS: Final = 1_000_000
_FIELDS: Final = {q: f",q={int(q)}i " for q in Quality}  # after the value
_ONLY_Q: Final = {q: f" q={int(q)}i " for q in Quality}  # no value (comm failure)


@dataclass(slots=True)
class _GatewayKeys:
    keys: dict[str, str] = field(default_factory=dict)  # signal -> escaped series key
    unknown: set[str] = field(default_factory=set)  # signals no birth has announced


@dataclass(slots=True)
class PointMapper:
    catalog: SignalCatalog
    unclassified: int = 0  # readings written under UNCLASSIFIED (no birth seen yet)
    _gateways: dict[tuple[str, str], _GatewayKeys] = field(default_factory=dict)
    _cached: int = 0

    def forget(self, site: str, gateway: str) -> None:
        """Drop cached keys of a gateway whose catalog changed (a new birth)."""
        dropped = self._gateways.pop((site, gateway), None)
        if dropped is not None:
            self._cached -= len(dropped.keys)

    def key(self, site: str, gateway: str, signal: str) -> str:
        cache = self._gateway(site, gateway)
        return cache.keys.get(signal) or self._resolve(site, gateway, signal, cache)

    def _gateway(self, site: str, gateway: str) -> _GatewayKeys:
        cache = self._gateways.get((site, gateway))
        if cache is None:
            if self._cached >= _MAX_CACHED_KEYS:
                self._gateways.clear()
                self._cached = 0
            cache = self._gateways[(site, gateway)] = _GatewayKeys()
        return cache

    def _resolve(self, site: str, gateway: str, signal: str, cache: _GatewayKeys) -> str:
        spec = self.catalog.spec(site, gateway, signal)
        tags = {"site": site, "gateway": gateway, "signal": signal}
        if spec is None:
            measurement = UNCLASSIFIED
            cache.unknown.add(signal)  # re-resolved once its birth arrives (forget)
        else:
            measurement = spec.kind.value
            tags.update(sku=spec.sku or "", location=spec.location or "", line=spec.line or "")
        key = cache.keys[signal] = series_key(measurement, tags)
        self._cached += 1
        return key

    def lines(self, site: str, gateway: str, readings: list[Reading]) -> list[str]:
        cache = self._gateway(site, gateway)
        keys = cache.keys
        out: list[str] = []
        append = out.append
        for r in readings:
            key = keys.get(r.signal) or self._resolve(site, gateway, r.signal, cache)
            if r.value is None:
                append(f"{key}{_ONLY_Q[r.quality]}{r.ts}")
            else:
                append(f"{key} value={r.value!r}{_FIELDS[r.quality]}{r.ts}")
        if cache.unknown:
            unknown = cache.unknown
            self.unclassified += sum(1 for r in readings if r.signal in unknown)
        return out
