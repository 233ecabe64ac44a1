"""Plain records passed from the pure ingest core to the metadata store (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.messages import Birth, State


@dataclass(frozen=True, slots=True)
class BirthRecord:
    site: str
    birth: Birth
    received_ms: int


@dataclass(frozen=True, slots=True)
class StateRecord:
    site: str
    gateway: str
    state: State
    received_ms: int


@dataclass(frozen=True, slots=True)
class SignalActivity:
    site: str
    gateway: str
    signal: str
    last_seen_ms: int | None
    last_ts_ms: int | None
    status: str


@dataclass(frozen=True, slots=True)
class GatewayActivity:
    site: str
    gateway: str
    last_seen_ms: int | None
