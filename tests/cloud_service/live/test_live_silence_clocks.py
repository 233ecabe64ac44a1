"""Where silence counts from, without I/O: live analytics, ingest health, the default rules
and the lifecycle, wired as ``Monitor.step`` wires them.

A gateway's return (review finding C) and the cloud's own restart (finding G) restart the
silence clocks: a signal awaiting its first reading after its gateway came back, or a
gateway the restarted cloud has not heard yet, is not silent; one that stays silent for a
full window from then still raises.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from cloud_service.alerts.lifecycle import Lifecycle, LifecyclePolicy
from cloud_service.alerts.records import AlertEvent
from cloud_service.alerts.rules import evaluate, load_rules
from cloud_service.ingest.health import HealthCore
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.monitor import _SIGNAL_RULES, silence_bounds
from shared.messages import Birth, GatewayState, Reading, SignalKind, SignalSpec, TelemetryBatch

T0 = 1_790_000_000_000
S = 1000
MIN = 60 * S
SITE = "s1"
RULES = load_rules()
SILENCE = silence_bounds(RULES)


class Loop:
    """Live analytics + ingest health + default rules + lifecycle, fed by hand."""

    def __init__(self, health: HealthCore | None = None) -> None:
        self.live = LiveAnalytics()
        self.health = health or HealthCore(3.0)
        self.lc = Lifecycle(LifecyclePolicy())
        self.seq = 0
        self.events: list[tuple[int, AlertEvent]] = []

    def birth(self, gateway: str, signals: dict[str, float], now: int) -> None:
        specs = [SignalSpec(id=s, kind=SignalKind.SENSOR, period_s=p) for s, p in signals.items()]
        b = Birth(
            gateway=gateway, site=SITE, boot="b1", agent_version="t", config_hash="x",
            started_ms=T0, signals=specs,
        )  # fmt: skip
        self.live.on_birth(SITE, b)
        self.health.birth(SITE, b, now)

    def send(self, gateway: str, names: list[str], now: int) -> None:
        self.seq += 1
        readings = [Reading(n, now, 20.0 + (self.seq % 7) / 10) for n in names]
        batch = TelemetryBatch(gateway=gateway, boot="b1", seq=self.seq, readings=readings)
        self.live.on_batch(SITE, gateway, batch, now)
        self.health.seen(SITE, gateway, dict.fromkeys(names, now), now)

    def step(self, now: int) -> list[AlertEvent]:
        self.health.tick(now)
        tracked = {(site, subj) for rt, site, subj in self.lc.tracked() if rt in _SIGNAL_RULES}
        inputs = self.live.inputs(now, self.health.gateways(), tracked, SILENCE)
        out = self.lc.observe(evaluate(RULES, inputs), now)
        self.events += [(now, e) for e in out]
        return out

    def raised(self, rule: str, since: int = 0) -> list[str]:
        return sorted(
            e.alert.key.subject
            for t, e in self.events
            if t >= since and e.kind.value == "raised" and e.alert.key.rule == rule
        )


FAST = [f"fast{i}" for i in range(3)]  # every 10 s
SLOW = [f"slow{i}" for i in range(20)]  # every 60 s (MES counts, tank levels)


def _plant_with_an_outage() -> tuple[Loop, int]:
    """30 minutes of data, a 30-minute outage (its will), then its return: the moment it
    says online again (before any reading) is returned."""
    loop = Loop()
    loop.birth("gw1", {**dict.fromkeys(FAST, 10.0), **dict.fromkeys(SLOW, 60.0)}, T0)
    loop.health.state(SITE, "gw1", GatewayState.ONLINE, T0)
    for t in range(T0, T0 + 30 * MIN, 10 * S):
        loop.send("gw1", FAST + (SLOW if (t - T0) % MIN == 50 * S else []), t)
        loop.step(t)
    off = T0 + 30 * MIN
    loop.health.state(SITE, "gw1", GatewayState.OFFLINE, off)
    for t in range(off, off + 30 * MIN, 10 * S):
        loop.step(t)
    back = off + 30 * MIN + 5 * S
    loop.health.state(SITE, "gw1", GatewayState.ONLINE, back)
    return loop, back


def test_signals_awaiting_their_first_reading_after_their_gateway_returns_raise_nothing() -> None:
    loop, back = _plant_with_an_outage()
    assert loop.raised("gateway-offline") == ["gw1"]
    loop.send("gw1", FAST, back)  # the first live batch: the fast signals only
    loop.step(back + S)
    for t in range(back + 10 * S, back + 5 * MIN, 10 * S):  # the slow ones within a minute
        loop.send("gw1", FAST + (SLOW if t == back + 50 * S else []), t)
        loop.step(t)
    assert loop.raised("no-data") == []
    assert not [a for a in loop.lc.open_alerts() if a.key.rule == "no-data"]
    figures = loop.live.inputs(back + S, loop.health.gateways(), (), ((0.0, 2.0),)).signals
    assert [f.signal for f in figures] == []  # not even silent for two periods


def test_a_signal_still_silent_after_its_gateway_returned_raises_a_window_after_the_return() -> (
    None
):
    loop, back = _plant_with_an_outage()
    still = SLOW[0]  # its sensor did not come back with the gateway
    for t in range(back, back + 12 * MIN, 10 * S):
        loop.send(
            "gw1", FAST + ([s for s in SLOW if s != still] if (t - back) % MIN == 0 else []), t
        )
        loop.step(t)
    assert loop.raised("no-data", since=back) == [f"gw1:{still}"]
    (at,) = [
        t for t, e in loop.events if e.kind.value == "raised" and e.alert.key.rule == "no-data"
    ]
    assert back + 10 * MIN <= at <= back + 10 * MIN + 10 * S  # measured from the return


GATEWAYS = {"gw-a": ["gw-a.t", "gw-a.u"], "gw-b": ["gw-b.t"], "gw-c": ["gw-c.t"]}


def _restored(last_seen: int, *, offline: frozenset[str] = frozenset()) -> Loop:
    """A cloud process just started: the registry's births and last-seen times restored (as
    ``CloudApp._start_metadata`` does), the live loop rebuilt from history, ingest not
    connected yet. Every signal (10 s period) last reported just before the downtime."""
    loop = Loop()
    for gw, signals in GATEWAYS.items():
        loop.birth(gw, dict.fromkeys(signals, 10.0), last_seen + 8 * MIN)
        loop.health.restore(
            SITE, gw,
            offline_since_ms=last_seen if gw in offline else None,
            last_seen_ms=last_seen,
        )  # fmt: skip
    index = loop.live.index
    ids = np.array([index.id_of(SITE, gw, s) for gw, signals in GATEWAYS.items() for s in signals])
    ts = np.concatenate([np.full(ids.size, last_seen - k * 10 * S) for k in range(60, -1, -1)])
    values = np.concatenate([np.full(ids.size, 20.0 + k % 3) for k in range(61)])
    loop.live.rebuild_engine(np.tile(ids, 61), ts.astype(np.int64), values)
    return loop


def test_a_cloud_restart_raises_no_gateway_offline_nor_no_data_before_ingest_connects() -> None:
    last = T0
    now = last + 30 * MIN  # the cloud was down for 30 minutes
    loop = _restored(last)
    for t in range(now, now + 2 * MIN, 5 * S):  # rebuild, start-up: ingest not connected yet
        loop.step(t)
    assert Counter(e.kind.value for _, e in loop.events) == Counter()


def test_after_a_restart_gateway_silence_counts_from_the_moment_ingest_connected() -> None:
    last = T0
    connected = last + 30 * MIN + 20 * S
    loop = _restored(last, offline=frozenset({"gw-c"}))
    loop.step(connected - 10 * S)
    assert loop.raised("gateway-offline") == ["gw-c"]  # offline before: still offline
    loop.health.resume(connected)
    for t in range(connected, connected + 12 * MIN, 5 * S):
        if t >= connected + 2 * S:  # the backlog, then live data: gw-a only
            loop.send("gw-a", GATEWAYS["gw-a"], t)
        loop.step(t)
    # gw-a talks; gw-b stays silent: raised once silent for 5 minutes from the connection;
    # gw-c's alert never cleared
    assert loop.raised("gateway-offline") == ["gw-b", "gw-c"]
    (at,) = [t for t, e in loop.events if e.alert.key.subject == "gw-b"]
    assert connected + 5 * MIN <= at <= connected + 5 * MIN + 5 * S
    assert not [e for _, e in loop.events if e.kind.value == "cleared"]


def test_after_a_restart_a_signal_that_stays_silent_raises_no_data_from_the_connection() -> None:
    last = T0
    connected = last + 30 * MIN
    loop = _restored(last)
    loop.health.resume(connected)
    for t in range(connected, connected + 12 * MIN, 5 * S):
        for gw, signals in GATEWAYS.items():
            loop.send(gw, [s for s in signals if s != "gw-a.u"], t)  # gw-a.u stays silent
        loop.step(t)
    assert loop.raised("gateway-offline") == []
    assert loop.raised("no-data") == ["gw-a:gw-a.u"]
    (at,) = [t for t, e in loop.events if e.alert.key.rule == "no-data"]
    assert connected + 10 * MIN <= at <= connected + 10 * MIN + 5 * S
