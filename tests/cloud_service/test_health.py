"""Gateway and signal health, without a clock: staleness follows the topology."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cloud_service.ingest.health import EventKind, HealthCore, SignalStatus
from shared.messages import Birth, GatewayState, SignalKind, SignalSpec

T0 = 1_790_000_000_000
K = EventKind


def birth(signals: dict[str, float], gateway: str = "gw") -> Birth:
    specs = [SignalSpec(id=s, kind=SignalKind.SENSOR, period_s=p) for s, p in signals.items()]
    return Birth(
        gateway=gateway, site="site", boot="b", agent_version="1", config_hash="h",
        started_ms=T0, signals=specs,
    )  # fmt: skip


def core(signals: dict[str, float], now: int = T0) -> HealthCore:
    h = HealthCore(stale_after_periods=3)
    h.birth("site", birth(signals), now)
    return h


def kinds(events: list) -> list[tuple[EventKind, str | None]]:  # type: ignore[type-arg]
    return [(e.kind, e.signal) for e in events]


def test_a_signal_is_stale_after_n_periods_without_data_and_fresh_again_with_data() -> None:
    h = core({"a": 1.0, "b": 10.0})
    assert h.seen("site", "gw", {"a": T0, "b": T0}, T0) == []
    assert h.tick(T0) == []
    assert h.status("site", "gw", "a") is SignalStatus.FRESH
    assert h.tick(T0 + 3000) == []  # exactly 3 periods: not yet
    assert kinds(h.tick(T0 + 3001)) == [(K.SIGNAL_STALE, "a")]
    assert h.tick(T0 + 4000) == []  # one event per transition
    assert h.status("site", "gw", "a") is SignalStatus.STALE
    assert h.seen("site", "gw", {"a": T0 + 5000}, T0 + 5000) == []  # noticed at the next tick
    assert kinds(h.tick(T0 + 5100)) == [(K.SIGNAL_FRESH, "a")]
    assert h.status("site", "gw", "b") is SignalStatus.FRESH


def test_a_signal_that_never_reports_goes_stale_from_its_announcement() -> None:
    h = core({"a": 1.0, "b": 100.0})
    h.seen("site", "gw", {"b": T0}, T0)
    assert kinds(h.tick(T0 + 3001)) == [(K.SIGNAL_STALE, "a")]


def test_an_offline_gateway_makes_all_its_signals_stale_with_one_event() -> None:
    signals = {f"s{i}": 1.0 for i in range(50)}
    h = core(signals)
    h.seen("site", "gw", dict.fromkeys(signals, T0), T0)
    (event,) = h.state("site", "gw", GatewayState.OFFLINE, T0 + 10)
    assert (event.kind, event.signals) == (K.GATEWAY_OFFLINE, 50)
    assert h.state("site", "gw", GatewayState.OFFLINE, T0 + 20) == []  # the will, again
    assert h.tick(T0 + 60_000) == []  # no storm as their own deadlines pass
    assert h.counts()[SignalStatus.STALE_PARENT] == 50


def test_back_online_the_signals_recover_quietly_and_a_silent_one_is_reported_alone() -> None:
    h = core({"a": 1.0, "b": 1.0})
    h.state("site", "gw", GatewayState.OFFLINE, T0)
    assert kinds(h.state("site", "gw", GatewayState.ONLINE, T0 + 10_000)) == [
        (K.GATEWAY_ONLINE, None)
    ]
    assert h.seen("site", "gw", {"a": T0 + 10_500}, T0 + 10_500) == []
    assert h.tick(T0 + 12_000) == []  # no "fresh" storm; b still has its window
    assert h.status("site", "gw", "a") is SignalStatus.FRESH
    assert kinds(h.tick(T0 + 13_001)) == [(K.SIGNAL_STALE, "b")]


def test_a_gateway_whose_signals_all_stop_at_once_is_one_silent_event() -> None:
    signals = {f"s{i}": 1.0 for i in range(20)}
    h = core(signals)
    h.seen("site", "gw", dict.fromkeys(signals, T0), T0)
    (event,) = h.tick(T0 + 3001)
    assert (event.kind, event.signals) == (K.GATEWAY_SILENT, 20)
    assert h.tick(T0 + 9000) == []
    assert kinds(h.seen("site", "gw", {"s0": T0 + 9000}, T0 + 9000)) == [(K.GATEWAY_ONLINE, None)]


def test_replayed_data_does_not_make_a_signal_fresh() -> None:
    h = core({"a": 1.0})
    h.tick(T0 + 5000)
    assert h.seen("site", "gw", {"a": T0}, T0 + 5000, historical=True) == []
    assert h.status("site", "gw", "a") is SignalStatus.STALE


def test_activity_is_reported_once_per_change() -> None:
    h = core({"a": 1.0, "b": 1.0})
    h.seen("site", "gw", {"a": T0 - 5, "x": T0}, T0)  # x was never announced
    h.tick(T0 + 1)
    gateways, signals = h.take_dirty()
    assert [(g.gateway, g.last_seen_ms) for g in gateways] == [("gw", T0)]
    assert [(s.signal, s.last_seen_ms, s.last_ts_ms, s.status) for s in signals] == [
        ("a", T0, T0 - 5, "fresh")
    ]
    assert h.take_dirty()[1] == []  # status changes are reported once
    swept = {s.signal: (s.last_seen_ms, s.status) for s in h.take_activity()}
    assert swept == {"a": (T0, "fresh"), "b": (None, "unknown")}
    assert h.take_activity() == []  # nothing new since the sweep


@given(
    periods=st.lists(st.sampled_from([0.5, 1.0, 5.0]), min_size=2, max_size=8),
    steps=st.lists(
        st.tuples(st.integers(0, 4000), st.sampled_from(["data", "tick", "off", "on"])),
        max_size=40,
    ),
)
def test_no_signal_event_while_its_gateway_is_offline(
    periods: list[float], steps: list[tuple[int, str]]
) -> None:
    signals = {f"s{i}": p for i, p in enumerate(periods)}
    h = core(signals)
    now, offline = T0, False
    for delta, action in steps:
        now += delta
        if action == "data":
            events = h.seen("site", "gw", {"s0": now}, now)
        elif action == "tick":
            events = h.tick(now)
        else:
            state = GatewayState.OFFLINE if action == "off" else GatewayState.ONLINE
            events = h.state("site", "gw", state, now)
            offline = action == "off"
        if offline:
            assert all(e.signal is None for e in events)
        assert len(events) <= len(signals)
