"""Signals as small integers: the analytics engine's state is indexed by them.

Ids are handed out in the order signals are first seen and never reused in a process, so an
array indexed by id stays valid as the fleet grows. What a signal is (kind, SKU, line, ...)
comes from its gateway's birth; a reading of a signal no birth announced still gets an id and
is scored, but feeds no stock or production figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud_service.alerts.explain import signal_subject
from shared.messages import Birth, SignalKind, SignalSpec


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    site: str
    gateway: str
    signal: str
    spec: SignalSpec | None = None  # None until a birth announces it

    @property
    def kind(self) -> SignalKind | None:
        return self.spec.kind if self.spec else None

    @property
    def label(self) -> str:
        return (self.spec.description if self.spec else "") or self.signal


@dataclass(slots=True)
class SeriesIndex:
    _ids: dict[tuple[str, str, str], int] = field(default_factory=dict)
    infos: list[SeriesInfo] = field(default_factory=list)
    #: (site, subject) -> ids: an alert's subject is a signal of one gateway
    #: (``explain.signal_subject``); one id, unless two ids compose the same (hashed) subject
    by_subject: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: (site, signal id) -> ids on any of its gateways: what an alert raised before subjects
    #: named the gateway stood for (its subject is the bare signal id)
    by_signal: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    _announced: dict[tuple[str, str], set[int]] = field(default_factory=dict)  # by gateway

    def __len__(self) -> int:
        return len(self.infos)

    def id_of(self, site: str, gateway: str, signal: str) -> int:
        key = (site, gateway, signal)
        sid = self._ids.get(key)
        if sid is None:
            sid = self._ids[key] = len(self.infos)
            self.infos.append(SeriesInfo(site, gateway, signal))
            self.by_subject.setdefault((site, signal_subject(gateway, signal)), []).append(sid)
            self.by_signal.setdefault((site, signal), []).append(sid)
        return sid

    def ids_of(self, site: str, gateway: str, signals: list[str]) -> list[int]:
        get = self._ids.get
        out = [get((site, gateway, s), -1) for s in signals]
        if -1 in out:
            out = [
                i if i >= 0 else self.id_of(site, gateway, s)
                for i, s in zip(out, signals, strict=True)
            ]
        return out

    def learn(self, site: str, birth: Birth) -> tuple[list[int], list[int]]:
        """Attach the birth's specs; returns the ids of its signals, and of the gateway's
        signals it no longer announces (retired: their spec is gone, their id stays)."""
        ids = []
        for spec in birth.signals:
            sid = self.id_of(site, birth.gateway, spec.id)
            self.infos[sid] = SeriesInfo(site, birth.gateway, spec.id, spec)
            ids.append(sid)
        key = (site, birth.gateway)
        retired = sorted(self._announced.get(key, set()) - set(ids))
        for sid in retired:
            info = self.infos[sid]
            self.infos[sid] = SeriesInfo(info.site, info.gateway, info.signal)
        self._announced[key] = set(ids)
        return ids, retired
