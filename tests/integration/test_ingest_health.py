"""Births, states and data through the real broker into the registry (PostgreSQL), and health
events that follow the topology: one event per cause, not one per signal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from ingest_support import Publisher, birth, cloud_settings, now_ms, pg_database, until

from cloud_service.app import build_app
from cloud_service.ingest.health import EventKind, HealthEvent, SignalStatus
from firmware_sim.stack import InfluxServer, MosquittoServer
from shared.codec import encode
from shared.messages import GatewayState, Reading, State, TelemetryBatch
from shared.topics import Channel

pytestmark = pytest.mark.integration

SIGNALS = [f"s{i}" for i in range(5)]


async def test_offline_gateway_makes_its_signals_stale_with_one_event(
    mosquitto: MosquittoServer, influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    site, gw = unique_name("site"), unique_name("gw")
    seq = 0

    def data(signals: list[str]) -> bytes:
        nonlocal seq
        seq += 1
        t = now_ms()
        readings = [Reading(s, t, 1.0) for s in signals]
        return encode(TelemetryBatch(gateway=gw, boot="b1", seq=seq, readings=readings))

    async with pg_database() as url:
        settings = cloud_settings(
            mosquitto,
            influxd,
            unique_name,
            url,
            health={"stale_after_periods": 3, "check_interval_s": 0.05},
            metadata={"flush_interval_s": 0.1},
        )
        app = build_app(settings)
        events: list[HealthEvent] = []
        # The broker is shared: other tests' retained births and states arrive too.
        app.ingest.on_health_event = lambda e: events.append(e) if e.gateway == gw else None
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        pub = Publisher(mosquitto, site, gw)
        try:
            await app.ingest.wait_connected()
            await asyncio.sleep(0.2)
            pub.publish_all([birth(site, gw, SIGNALS, period_s=0.2)], pub.topic(Channel.BIRTH))
            online = State(state=GatewayState.ONLINE, boot="b1", ts=now_ms())
            pub.publish_all([encode(online)], pub.topic(Channel.STATE))
            pub.publish_all([data(SIGNALS)])

            async def s4_goes_stale() -> bool:  # the others keep reporting
                pub.publish_all([data(SIGNALS[:4])])
                await asyncio.sleep(0.05)
                return any(e.kind is EventKind.SIGNAL_STALE for e in events)

            await until(s4_goes_stale, 30, "s4 to go stale")
            assert [(e.kind, e.signal) for e in events] == [(EventKind.SIGNAL_STALE, "s4")]

            offline = State(state=GatewayState.OFFLINE, boot="b1", ts=now_ms())
            pub.publish_all([encode(offline)], pub.topic(Channel.STATE))
            await until(
                lambda: (
                    {app.ingest.health.status(site, gw, s) for s in SIGNALS}
                    == {SignalStatus.STALE_PARENT}
                ),
                30,
                "every signal stale through its gateway",
            )
            await asyncio.sleep(1.2)  # well past every signal's own deadline (3 x 0.2 s)
            assert app.metrics.value("flightdeck_signals", status="stale_parent") >= 5
            kinds = [(e.kind, e.signal, e.signals) for e in events]
            assert kinds == [
                (EventKind.SIGNAL_STALE, "s4", 0),
                (EventKind.GATEWAY_OFFLINE, None, 5),
            ]

            async def registry_saved() -> bool:
                rows = await app.metadata.registry.signals(site, gw)
                return {r["status"] for r in rows} == {"stale_parent"}

            await until(registry_saved, 30, "the registry to show stale_parent")
            (gateway,) = [g for g in await app.metadata.registry.gateways() if g["gateway"] == gw]
            assert (gateway["boot"], gateway["state"]) == ("b1", "offline")
            rows = {r["signal"]: r for r in await app.metadata.registry.signals(site, gw)}
            assert sorted(rows) == SIGNALS
            assert all(rows[s]["last_seen_ms"] is not None for s in SIGNALS)
            assert all(rows[s]["period_s"] == 0.2 for s in SIGNALS)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            pub.close()
