"""The spool end to end, for real: a counting Modbus device -> edge agent -> Mosquitto -> cloud
ingest (in process) -> influxd, with the faults the spool exists for.

Every reading the device served has a unique value (its serial number), so each test checks
InfluxDB value by value: zero readings lost where the policy did not drop them, and drops
counted exactly as the agent reports them (status and birth).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from firmware_sim.stack import InfluxServer, MosquittoServer
from tests.edge_agent.support import (
    AgentRun,
    CloudRunner,
    CountingDevice,
    Recorder,
    agent_config,
    cloud,
    counter_signal,
    good_values,
    influx_points,
    until,
)

pytestmark = pytest.mark.integration


def spool_readings(agent: Agent) -> int:
    return agent.store.totals.readings


async def acked_through(agent: Agent, seq: int) -> None:
    """Wait until the cloud acked every batch of this boot up to ``seq``."""

    def done() -> bool:
        ack = agent.last_ack
        return ack is not None and ack.boot == agent.boot and ack.seq >= seq

    await until(done, 30, lambda: f"the ack of seq {seq} (last: {agent.last_ack})")


async def test_broker_outage_mid_stream_loses_nothing(
    fresh_mosquitto: Callable[..., MosquittoServer],
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    broker = fresh_mosquitto()
    site, gateway, db = unique_name("site"), unique_name("gw"), unique_name("db")
    ingest = CloudRunner(lambda: cloud(broker, influxd, db, unique_name("c"), tmp_path))
    async with CountingDevice() as device:
        await ingest.start()
        run = AgentRun(
            agent_config(
                site=site,
                gateway=gateway,
                broker=broker,
                device_port=device.port,
                spool_path=tmp_path / "spool.db",
                signals=[counter_signal(period_s=0.01)],
                # a slow catch-up, so acks arrive while most of the backlog is still unsent
                delivery={"catchup_readings_per_s": 200, "catchup_burst_readings": 20},
            )
        )
        agent = await run.start()
        await until(lambda: agent.last_ack is not None and agent.last_ack.seq >= 3, 20, "acks")
        await asyncio.to_thread(broker.stop)
        served_at_outage = device.count
        await until(lambda: not agent.outbox.connected, 10, "the agent to see the outage")
        await until(lambda: device.count >= served_at_outage + 100, 20, "readings while down")
        assert spool_readings(agent) >= 100  # held in the spool, not in paho's memory
        await asyncio.to_thread(broker.start)
        await until(lambda: agent.outbox.connected, 20, "reconnection")
        await acked_through(agent, agent.batcher.last_seq)
        assert agent.outbox.stats.backlog_sent > 0
        final = await run.finish()
        await ingest.stop()
    assert final.spool.readings == 0, final.spool
    assert final.drops_by_reason == {}
    points = await influx_points(influxd, db, gateway)
    assert good_values(points["cnt"]) == set(range(1, device.count + 1))


async def test_cloud_ingest_down_spool_grows_then_drains(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gateway, db = unique_name("site"), unique_name("gw"), unique_name("db")
    client_id = unique_name("c")  # the same id after the restart: the broker kept its queue
    ingest = CloudRunner(lambda: cloud(mosquitto, influxd, db, client_id, tmp_path))
    async with CountingDevice() as device:
        await ingest.start()
        run = AgentRun(
            agent_config(
                site=site,
                gateway=gateway,
                broker=mosquitto,
                device_port=device.port,
                spool_path=tmp_path / "spool.db",
            )
        )
        agent = await run.start()
        await until(lambda: agent.last_ack is not None, 20, "a first ack")
        await ingest.stop()
        acked = agent.last_ack
        await until(lambda: spool_readings(agent) >= 60, 20, "the spool to grow")
        assert agent.last_ack == acked  # no acks while the cloud is down...
        assert agent.outbox.stats.rewinds == 0  # ...and no resends into the broker queue
        grown = spool_readings(agent)
        await ingest.start()
        await until(lambda: spool_readings(agent) < grown // 4, 20, "the spool to drain")
        final = await run.finish()
        await ingest.stop()
    assert final.spool.readings == 0, final.spool
    points = await influx_points(influxd, db, gateway)
    assert good_values(points["cnt"]) == set(range(1, device.count + 1))


async def test_full_spool_drops_the_oldest_and_counts_every_loss(
    fresh_mosquitto: Callable[..., MosquittoServer],
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    broker = fresh_mosquitto()
    await asyncio.to_thread(broker.stop)  # the gateway starts cut off
    site, gateway, db = unique_name("site"), unique_name("gw"), unique_name("db")
    signals = [counter_signal(signal_id=f"cnt{i}") for i in range(8)]
    ingest = CloudRunner(lambda: cloud(broker, influxd, db, unique_name("c"), tmp_path))
    async with CountingDevice() as device:
        run = AgentRun(
            agent_config(
                site=site,
                gateway=gateway,
                broker=broker,
                device_port=device.port,
                spool_path=tmp_path / "spool.db",
                signals=signals,
                spool={"max_bytes": 4096},
            )
        )
        agent = await run.start()
        await until(
            lambda: sum(agent.store.ledger.per_signal().values()) >= 400, 30, "spool overflow"
        )
        # dropped while cut off: never sent, so lost for certain (counted exactly)
        lost_offline = dict(agent.store.ledger.per_signal())
        await asyncio.to_thread(broker.start)
        await ingest.start()
        recorder = Recorder(broker, site, gateway)
        await until(lambda: agent.outbox.connected, 20, "reconnection")
        # caught up: the backlog acked, at most a few live batches on their way (an instant
        # with none in flight may not come while the cloud acks slower than the agent reads)
        await until(
            lambda: not agent.outbox.has_backlog() and spool_readings(agent) <= 40,
            60,
            "the backlog drained by acks",
        )
        final = await run.finish()  # stops reading, waits for the last acks
        await until(
            lambda: (
                bool(recorder.snapshot()[1])
                and recorder.snapshot()[1][-1].dropped == final.drops_by_signal
            ),
            10,
            lambda: f"a birth with the final drop counts {final.drops_by_signal}",
        )
        recorder.close()
        await ingest.stop()
    assert final.spool.readings == 0
    assert set(final.drops_by_reason) == {"spool_full"}
    points = await influx_points(influxd, db, gateway)
    served = device.count
    (source,) = final.sources
    produced = source.readings // len(signals)  # every poll gives each signal one reading
    assert produced * len(signals) == source.readings
    for s in signals:
        dropped = final.drops_by_signal[s["id"]]
        # nothing lost that is not counted; and what was dropped while the gateway was cut
        # off never arrived. A batch dropped later may have been sent, its ack not yet back
        # (the cloud catching up): it may still be stored, so the count is an upper bound
        # there (docs/edge-agent.md, "Spool")
        stored_n = len(points[s["id"]])
        assert produced - dropped <= stored_n <= produced - lost_offline.get(s["id"], 0), s["id"]
        stored = good_values(points[s["id"]])
        # only the oldest are missing: the stored values run without a gap up to the last
        assert stored == set(range(min(stored), served + 1)), s["id"]
        assert min(stored) > 1


async def test_corrupt_spool_at_start_is_kept_aside_and_the_agent_works(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool.db"
    spool.write_bytes(b"\x00garbage, not SQLite\x00" * 500)
    site, gateway, db = unique_name("site"), unique_name("gw"), unique_name("db")
    ingest = CloudRunner(lambda: cloud(mosquitto, influxd, db, unique_name("c"), tmp_path))
    async with CountingDevice() as device:
        await ingest.start()
        run = AgentRun(
            agent_config(
                site=site,
                gateway=gateway,
                broker=mosquitto,
                device_port=device.port,
                spool_path=spool,
            )
        )
        await run.start()
        await until(lambda: device.count >= 20, 20, "readings")
        final = await run.finish()
        await ingest.stop()
    (moved,) = final.spool.quarantined
    assert await asyncio.to_thread(Path(moved).read_bytes) == b"\x00garbage, not SQLite\x00" * 500
    assert spool.exists()
    assert final.spool.readings == 0
    points = await influx_points(influxd, db, gateway)
    assert good_values(points["cnt"]) == set(range(1, device.count + 1))
