"""After a restart the anomaly engine is as ready as before it (a real influxd).

A 5-minute signal with a daily cycle: its model flags nothing before 150 samples (12.5 h)
and uses its time-of-day profile once it has watched the signal for two days. The start-up
replays each signal's warm-up and two days from InfluxDB, so a live spike soon after the
restart is flagged as the never-restarted engine flags it, and the profile does not learn
that spike as normal and flag its time of day on the following days.
"""

from __future__ import annotations

import numpy as np
import pytest

from cloud_service.analytics.engine import AnomalyEvents
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.history import PROFILE_MS, rebuild
from cloud_service.live.settings import LiveSettings
from cloud_service.storage.influx import InfluxStore
from shared.messages import Birth, Reading, SignalKind, SignalSpec, TelemetryBatch

pytestmark = pytest.mark.integration

SITE = "p1"
GATEWAYS = ("gwA", "gwB")  # the same tag on two lines
P = 300_000  # 5 minutes
DAY = 288  # samples a day
N = 14 * DAY
R = 10 * DAY  # the restart, after ten days
SPIKE = R + 40  # 3 h 20 min after it
T = 1_767_744_000_000 + np.arange(N, dtype=np.int64) * P

Flags = list[tuple[str, int, int]]  # (gateway, ts, reason) of live onsets


def _values(phase: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = np.arange(N)
    x = 50 + 10 * np.sin(2 * np.pi * k / DAY + phase) + rng.normal(0, 0.5, N)
    return np.asarray(x, dtype=np.float64)


X = {"gwA": _values(0.0, 1), "gwB": _values(1.0, 2)}
X["gwA"][SPIKE] += 40.0  # a clear spike on gwA's line only


def _live(settings: LiveSettings | None = None) -> tuple[LiveAnalytics, Flags]:
    live = LiveAnalytics(settings)
    for gw in GATEWAYS:
        live.on_birth(
            SITE,
            Birth(gateway=gw, site=SITE, boot="b", agent_version="t", config_hash="h",
                  started_ms=int(T[0]),
                  signals=[SignalSpec(id="temp", kind=SignalKind.SENSOR, period_s=P / 1000)]),
        )  # fmt: skip
    flags: Flags = []

    def record(events: AnomalyEvents) -> None:
        if not events.historical:
            infos = live.index.infos
            flags.extend(
                (infos[s].gateway, t, r)
                for s, t, r in zip(
                    events.series.tolist(), events.ts_ms.tolist(), events.reason.tolist(),
                    strict=True,
                )
            )  # fmt: skip

    live.on_events = record
    return live, flags


def _feed(live: LiveAnalytics, lo: int, hi: int) -> None:
    """Live ingest: 6 readings a batch per gateway, received at the last one's time."""
    for a in range(lo, hi, 6):
        b = min(a + 6, hi)
        for gw in GATEWAYS:
            readings = [
                Reading("temp", t, v)
                for t, v in zip(T[a:b].tolist(), X[gw][a:b].tolist(), strict=True)
            ]
            batch = TelemetryBatch(gateway=gw, boot="b", seq=a, readings=readings)
            live.on_batch(SITE, gw, batch, int(T[b - 1]))


async def test_a_restarted_engine_flags_what_the_never_restarted_one_flags(
    influx_store: InfluxStore,
) -> None:
    await influx_store.write(
        [
            f"sensor,gateway={gw},signal=temp,site={SITE} value={v!r} {t}"
            for gw in GATEWAYS
            for t, v in zip(T[:R].tolist(), X[gw][:R].tolist(), strict=True)
        ],
        precision="ms",
    )
    never, never_flags = _live()
    _feed(never, 0, N)
    expected = [f for f in never_flags if f[1] >= T[R]]
    assert ("gwA", int(T[SPIKE]), 2) in expected  # the spike (reason 2: spike)
    assert len(expected) == 1  # and nothing else: not the gwB line, not the next days

    restarted, flags = _live()
    report = await rebuild(restarted, influx_store, now_ms=int(T[R]))
    # per signal: 150 samples of warm-up, then two days for the time-of-day profile
    assert report.engine_points == 2 * (150 + PROFILE_MS // P)
    _feed(restarted, R, N)
    assert flags == expected


async def test_the_point_budget_cuts_what_is_replayed(influx_store: InfluxStore) -> None:
    """Under a budget of 400 points the two signals get 200 each, the newest."""
    await influx_store.write(
        [
            f"sensor,gateway={gw},signal=temp,site={SITE} value={v!r} {t}"
            for gw in GATEWAYS
            for t, v in zip(T[:R].tolist(), X[gw][:R].tolist(), strict=True)
        ],
        precision="ms",
    )
    live, _ = _live(LiveSettings(rebuild_max_points=400))
    report = await rebuild(live, influx_store, now_ms=int(T[R]))
    assert report.engine_points == 400
    snap = live.engine.snapshot(np.arange(2))
    assert snap.last_seen_ms.tolist() == [int(T[R - 1])] * 2


async def test_a_signal_denser_than_announced_is_read_whole(influx_store: InfluxStore) -> None:
    """Announced every 10 min but stored every 10 s (60 times its announced points): within
    a budget with room to spare, its cap (its points and a share of what is left) takes all
    of its window (``test_live_history_reads`` caps it under a tight budget)."""
    live = LiveAnalytics()
    live.on_birth(
        SITE,
        Birth(gateway="gwA", site=SITE, boot="b", agent_version="t", config_hash="h",
              started_ms=int(T[0]),
              signals=[SignalSpec(id="lvl", kind=SignalKind.SENSOR, period_s=600.0)]),
    )  # fmt: skip
    now = int(T[R])
    window = 150 * 600_000 + PROFILE_MS  # 73 h
    ts = np.arange(now - window - 3_600_000, now, 10_000)
    await influx_store.write(
        [f"sensor,gateway=gwA,signal=lvl,site={SITE} value={k % 97} {t}" for k, t in
         enumerate(ts.tolist())],
        precision="ms",
    )  # fmt: skip
    report = await rebuild(live, influx_store, now_ms=now)
    assert report.engine_points == int((ts >= now - window).sum()) == window // 10_000
