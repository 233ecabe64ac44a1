"""Gateway and signal health as a pure state machine: births, states and data in, events out.

A signal is stale when nothing arrived for ``stale_after_periods`` × its expected period
(from the birth). Staleness follows the topology, so one cause makes one event:

* a gateway going offline (its state, or its MQTT will) makes all its signals
  ``stale_parent`` at once, with one ``gateway_offline`` event and none per signal;
* a gateway still "online" whose signals all go stale in the same check raises one
  ``gateway_silent`` event instead of one per signal;
* coming back (``gateway_online``, or data again after ``gateway_silent``) clears its
  signals quietly as their data arrives: no storm of "recovered" events either.

Only live data refreshes a signal: replayed (``historical``) batches are old news.
A gateway back online (or heard from again after being silent) gives every signal a fresh
window; data from before that does not count.

The cloud's own downtime is not the gateways' silence: after :meth:`HealthCore.restore`
(start-up, from the registry) silence is not checked (held) until :meth:`HealthCore.resume`
(ingest connected to the broker), which restarts every clock from that moment.
Time is passed in (``now_ms``), so every transition is tested without a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from cloud_service.ingest.records import GatewayActivity, SignalActivity
from shared.messages import Birth, GatewayState


class SignalStatus(StrEnum):
    UNKNOWN = "unknown"  # announced, no deadline passed and no data yet
    FRESH = "fresh"
    STALE = "stale"  # its own data stopped
    STALE_PARENT = "stale_parent"  # its gateway is offline or silent


class EventKind(StrEnum):
    SIGNAL_STALE = "signal_stale"
    SIGNAL_FRESH = "signal_fresh"
    GATEWAY_OFFLINE = "gateway_offline"
    GATEWAY_SILENT = "gateway_silent"
    GATEWAY_ONLINE = "gateway_online"


@dataclass(frozen=True, slots=True)
class HealthEvent:
    kind: EventKind
    site: str
    gateway: str
    at_ms: int
    signal: str | None = None
    signals: int = 0  # how many signals the event covers


@dataclass(slots=True)
class _Signal:
    period_ms: int
    since_ms: int  # the staleness clock starts here when no data has arrived since
    status: SignalStatus = SignalStatus.UNKNOWN


@dataclass(slots=True)
class _Gateway:
    signals: dict[str, _Signal] = field(default_factory=dict)
    #: signal -> receive time / device time of its latest live reading. Plain dicts updated
    #: in C per batch (``dict.update``): this runs for every reading ingested.
    seen: dict[str, int] = field(default_factory=dict)
    ts: dict[str, int] = field(default_factory=dict)
    state: GatewayState | None = None
    silent: bool = False
    last_seen_ms: int | None = None
    active: bool = False  # data since the last activity sweep
    down_since_ms: int | None = None  # offline or silent since
    restarted_ms: int | None = None  # its signals' clocks last restarted (its return)


@dataclass(frozen=True, slots=True)
class GatewayView:
    """One gateway's connectivity as of the last tick, for alert rules."""

    site: str
    gateway: str
    online: bool
    last_seen_ms: int | None
    down_since_ms: int | None
    #: Silence is not watched yet: the cloud restarted and its ingest has not connected
    #: since (:meth:`HealthCore.resume`). Neither the gateway's nor its signals' silence is
    #: known; its figures from before are the cloud's downtime, not the gateway's.
    held: bool = False
    #: Where the gateway's own silence starts counting: its last telemetry, or the moment
    #: the cloud's ingest connected if later (None: held, or never heard from).
    quiet_since_ms: int | None = None
    #: Its signals' silence counts from no earlier than this: the gateway's return (online
    #: again, or heard from again after silence) or the cloud's ingest connecting, the
    #: later (None: neither happened). :meth:`HealthCore.tick` uses the same clocks.
    clocks_ms: int | None = None


@dataclass(slots=True)
class HealthCore:
    """Transitions happen in :meth:`tick` (called every ``check_interval_s``), not per batch:
    a signal turns fresh or stale at most one check interval late, and ingesting a batch
    costs two dict updates instead of a state machine step per reading."""

    stale_after_periods: float = 3.0
    _gateways: dict[tuple[str, str], _Gateway] = field(default_factory=dict)
    _dirty: set[tuple[str, str, str]] = field(default_factory=set)
    #: Silence checks wait for :meth:`resume` (set by :meth:`restore` or :meth:`hold`).
    held: bool = False
    #: When :meth:`resume` last restarted every clock (the cloud's ingest connected).
    resumed_ms: int | None = None

    def _gateway(self, site: str, gateway: str) -> _Gateway:
        return self._gateways.setdefault((site, gateway), _Gateway())

    # -- inputs ---------------------------------------------------------------------------
    def birth(self, site: str, birth: Birth, now_ms: int) -> None:
        """(Re)announce a gateway's signals; known signals keep their status and times."""
        gw = self._gateway(site, birth.gateway)
        old = gw.signals
        gw.signals = {}
        for spec in birth.signals:
            period_ms = max(1, round(spec.period_s * 1000))
            sig = old.get(spec.id) or _Signal(period_ms, now_ms)
            sig.period_ms = period_ms
            gw.signals[spec.id] = sig

    def restore(
        self, site: str, gateway: str, *, offline_since_ms: int | None, last_seen_ms: int | None
    ) -> None:
        """Start-up: what the registry knew (last telemetry; offline since), so a gateway
        that was offline before a restart is not taken for online after it.

        Holds silence checks until :meth:`resume`: ``last_seen_ms`` is from before the
        cloud's downtime, and the broker keeps what gateways sent meanwhile until ingest
        connects, so their silence since is unknown, not measured."""
        self.hold()
        gw = self._gateway(site, gateway)
        gw.last_seen_ms = last_seen_ms
        if offline_since_ms is not None:
            gw.state = GatewayState.OFFLINE
            gw.down_since_ms = offline_since_ms
            self._orphan(site, gateway, gw)

    def hold(self) -> None:
        """Stop checking silence until :meth:`resume` (the cloud cannot hear gateways yet)."""
        self.held = True

    def resume(self, now_ms: int) -> None:
        """The cloud's ingest connected (and the broker starts delivering what it kept):
        silence counts from now. Every gateway and signal gets a fresh window, as on a
        gateway's return; a gateway or signal that stays silent for a full window from
        now is reported as usual."""
        self.held = False
        self.resumed_ms = now_ms
        for gw in self._gateways.values():
            self._restart_clocks(gw, now_ms)

    def state(self, site: str, gateway: str, state: GatewayState, now_ms: int) -> list[HealthEvent]:
        gw = self._gateway(site, gateway)
        previous, gw.state = gw.state, state
        if state is GatewayState.OFFLINE and previous is not GatewayState.OFFLINE:
            gw.down_since_ms = now_ms
            self._orphan(site, gateway, gw)
            return [
                HealthEvent(
                    EventKind.GATEWAY_OFFLINE, site, gateway, now_ms, signals=len(gw.signals)
                )
            ]
        if state is GatewayState.ONLINE and previous is GatewayState.OFFLINE:
            gw.down_since_ms = None
            self._restart_clocks(gw, now_ms)
            return [HealthEvent(EventKind.GATEWAY_ONLINE, site, gateway, now_ms)]
        return []

    def seen(
        self,
        site: str,
        gateway: str,
        latest_ts: Mapping[str, int],
        now_ms: int,
        *,
        historical: bool = False,
    ) -> list[HealthEvent]:
        """Live data arrived for the signals in ``latest_ts`` (signal -> newest device time)."""
        if historical:
            return []
        gw = self._gateway(site, gateway)
        gw.last_seen_ms = now_ms
        gw.active = True
        gw.seen.update(dict.fromkeys(latest_ts, now_ms))
        gw.ts.update(latest_ts)
        if gw.silent:
            gw.silent = False
            if gw.state is not GatewayState.OFFLINE:
                gw.down_since_ms = None
            self._restart_clocks(gw, now_ms)
            return [HealthEvent(EventKind.GATEWAY_ONLINE, site, gateway, now_ms)]
        return []

    def tick(self, now_ms: int) -> list[HealthEvent]:
        """Check every deadline; call periodically. Nothing while held (see :meth:`hold`)."""
        events: list[HealthEvent] = []
        if self.held:
            return events
        for (site, gateway), gw in self._gateways.items():
            if gw.state is GatewayState.OFFLINE or gw.silent or not gw.signals:
                continue
            newly: list[str] = []
            for name, sig in gw.signals.items():
                window = self.stale_after_periods * sig.period_ms
                seen = gw.seen.get(name)
                if seen is not None and seen >= sig.since_ms and now_ms - seen <= window:
                    if sig.status is not SignalStatus.FRESH:
                        if sig.status is SignalStatus.STALE:  # quiet after a parent outage
                            events.append(
                                HealthEvent(EventKind.SIGNAL_FRESH, site, gateway, now_ms, name)
                            )
                        sig.status = SignalStatus.FRESH
                        self._dirty.add((site, gateway, name))
                elif (
                    sig.status is not SignalStatus.STALE
                    and now_ms - max(seen or 0, sig.since_ms) > window
                ):
                    newly.append(name)
            if not newly:
                continue
            if len(gw.signals) > 1 and all(
                name in newly or sig.status is not SignalStatus.FRESH
                for name, sig in gw.signals.items()
            ):
                gw.silent = True
                gw.down_since_ms = gw.down_since_ms or now_ms
                self._orphan(site, gateway, gw)
                events.append(
                    HealthEvent(
                        EventKind.GATEWAY_SILENT, site, gateway, now_ms, signals=len(gw.signals)
                    )
                )
                continue
            for name in newly:
                gw.signals[name].status = SignalStatus.STALE
                self._dirty.add((site, gateway, name))
                events.append(HealthEvent(EventKind.SIGNAL_STALE, site, gateway, now_ms, name))
        return events

    def _orphan(self, site: str, gateway: str, gw: _Gateway) -> None:
        for name, sig in gw.signals.items():
            sig.status = SignalStatus.STALE_PARENT
            self._dirty.add((site, gateway, name))

    @staticmethod
    def _restart_clocks(gw: _Gateway, now_ms: int) -> None:
        gw.restarted_ms = now_ms
        for sig in gw.signals.values():
            sig.since_ms = now_ms  # a full window to resume; older data does not count

    # -- outputs --------------------------------------------------------------------------
    def status(self, site: str, gateway: str, signal: str) -> SignalStatus | None:
        """As of the last :meth:`tick`."""
        sig = self._gateways.get((site, gateway), _Gateway()).signals.get(signal)
        return sig.status if sig is not None else None

    def gateways(self) -> list[GatewayView]:
        """Every known gateway: online unless its will said offline or all its signals went
        silent (as of the last :meth:`tick`); with where its silence counts from."""
        resumed = self.resumed_ms
        out = []
        for (site, name), gw in self._gateways.items():
            seen = gw.last_seen_ms
            if self.held or seen is None:
                quiet = None
            else:
                quiet = seen if resumed is None else max(seen, resumed)
            restarted = gw.restarted_ms
            if resumed is not None:
                restarted = resumed if restarted is None else max(restarted, resumed)
            out.append(
                GatewayView(
                    site,
                    name,
                    gw.state is not GatewayState.OFFLINE and not gw.silent,
                    seen,
                    gw.down_since_ms,
                    held=self.held,
                    quiet_since_ms=quiet,
                    clocks_ms=restarted,
                )
            )
        return out

    def counts(self) -> dict[SignalStatus, int]:
        out = dict.fromkeys(SignalStatus, 0)
        for gw in self._gateways.values():
            for sig in gw.signals.values():
                out[sig.status] += 1
        return out

    def take_dirty(self) -> tuple[list[GatewayActivity], list[SignalActivity]]:
        """Status changes since the last call, and the last-seen time of every gateway."""
        gateways = [
            GatewayActivity(site, gw, g.last_seen_ms)
            for (site, gw), g in self._gateways.items()
            if g.last_seen_ms is not None
        ]
        signals = [self._row(site, gw, name) for site, gw, name in self._dirty]
        self._dirty.clear()
        return gateways, [s for s in signals if s is not None]

    def take_activity(self) -> list[SignalActivity]:
        """Last-seen times of every announced signal of gateways with data since the last
        sweep: a bulk save, done less often than status changes."""
        rows: list[SignalActivity] = []
        for (site, gateway), gw in self._gateways.items():
            if gw.active:
                gw.active = False
                rows.extend(
                    SignalActivity(
                        site, gateway, name, gw.seen.get(name), gw.ts.get(name), sig.status.value
                    )
                    for name, sig in gw.signals.items()
                )
        return rows

    def unsaved(self, signals: Iterable[SignalActivity]) -> None:
        """Rows taken by :meth:`take_dirty` / :meth:`take_activity` that could not be saved:
        pending again, so the next save carries them (with their values as of then)."""
        for s in signals:
            gw = self._gateways.get((s.site, s.gateway))
            if gw is not None and s.signal in gw.signals:
                self._dirty.add((s.site, s.gateway, s.signal))

    def _row(self, site: str, gateway: str, name: str) -> SignalActivity | None:
        gw = self._gateways[(site, gateway)]
        sig = gw.signals.get(name)
        if sig is None:
            return None
        return SignalActivity(
            site, gateway, name, gw.seen.get(name), gw.ts.get(name), sig.status.value
        )


def affected(events: Iterable[HealthEvent]) -> int:
    """Signals covered by ``events`` (an event per gateway may stand for many signals)."""
    return sum(e.signals or 1 for e in events)
