"""Ingest health across a cloud restart, without a clock: figures restored from the registry
are from before the cloud's downtime, so silence is held until ingest connects, and counted
from that moment on (review finding G). A gateway's return restarts its signals' clocks
(finding C), and the view says from when."""

from __future__ import annotations

from cloud_service.ingest.health import EventKind, HealthCore, SignalStatus
from shared.messages import GatewayState
from tests.cloud_service.test_health import T0, birth

MIN = 60_000
K = EventKind


def restarted(now: int, *, offline: bool = False) -> HealthCore:
    """As ``CloudApp._start_metadata`` leaves it: births and the registry's last-seen times
    (8 minutes before ``now``), ingest not connected yet."""
    h = HealthCore(stale_after_periods=3)
    h.birth("site", birth({"a": 1.0, "b": 1.0}), now)
    h.restore(
        "site", "gw", offline_since_ms=now - 8 * MIN if offline else None,
        last_seen_ms=now - 8 * MIN,
    )  # fmt: skip
    return h


def test_a_restored_core_holds_silence_until_ingest_connects() -> None:
    h = restarted(T0)
    assert h.held
    assert h.tick(T0 + 10 * MIN) == []  # every deadline long past: nothing is known yet
    assert h.status("site", "gw", "a") is SignalStatus.UNKNOWN
    (view,) = h.gateways()
    assert (view.online, view.held, view.last_seen_ms, view.quiet_since_ms) == (
        True, True, T0 - 8 * MIN, None,
    )  # fmt: skip


def test_after_resume_every_clock_counts_from_the_connection() -> None:
    h = restarted(T0)
    connected = T0 + 2 * MIN
    h.resume(connected)
    (view,) = h.gateways()
    assert (view.held, view.quiet_since_ms, view.clocks_ms) == (False, connected, connected)
    assert h.tick(connected + 3000) == []  # a full window (3 x 1 s) from the connection
    h.seen("site", "gw", {"a": connected + 500}, connected + 500)
    assert h.tick(connected + 3000) == []
    assert [(e.kind, e.signal) for e in h.tick(connected + 3001)] == [(K.SIGNAL_STALE, "b")]
    (view,) = h.gateways()
    assert view.quiet_since_ms == connected + 500  # its own data, once newer


def test_a_gateway_that_stays_silent_after_resume_goes_silent_a_window_later() -> None:
    h = restarted(T0)
    h.resume(T0)
    assert h.tick(T0 + 3000) == []
    (event,) = h.tick(T0 + 3001)
    assert (event.kind, event.signals) == (K.GATEWAY_SILENT, 2)
    (view,) = h.gateways()
    assert (view.online, view.down_since_ms) == (False, T0 + 3001)


def test_a_gateway_offline_before_the_restart_stays_offline_through_resume() -> None:
    h = restarted(T0, offline=True)
    h.resume(T0 + MIN)
    assert h.tick(T0 + 10 * MIN) == []
    (view,) = h.gateways()
    assert (view.online, view.down_since_ms) == (False, T0 - 8 * MIN)
    assert h.status("site", "gw", "a") is SignalStatus.STALE_PARENT
    (event,) = h.state("site", "gw", GatewayState.ONLINE, T0 + 11 * MIN)  # its retained state
    assert event.kind is K.GATEWAY_ONLINE


def test_a_gateway_born_after_resume_counts_from_the_resume_at_the_earliest() -> None:
    h = restarted(T0)
    h.resume(T0 + MIN)
    h.birth("site", birth({"x": 1.0}, gateway="gw2"), T0 + 2 * MIN)
    view = {v.gateway: v for v in h.gateways()}["gw2"]
    assert (view.held, view.clocks_ms, view.quiet_since_ms) == (False, T0 + MIN, None)


def test_the_view_says_when_a_gateway_returned() -> None:
    h = HealthCore(stale_after_periods=3)
    h.birth("site", birth({"a": 1.0, "b": 60.0}), T0)
    (view,) = h.gateways()
    assert (view.held, view.clocks_ms) == (False, None)  # never restarted: not held either
    h.state("site", "gw", GatewayState.OFFLINE, T0 + MIN)
    h.state("site", "gw", GatewayState.ONLINE, T0 + 30 * MIN)
    (view,) = h.gateways()
    assert (view.online, view.clocks_ms) == (True, T0 + 30 * MIN)
