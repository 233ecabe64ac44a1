"""A source server that dies and comes back: the agent never goes silent about it.

While the Modbus device is down its signal is published with quality COMM_FAILURE (null value)
at its usual period, so the outage is in InfluxDB as data; when the device is back the values
resume, and every value the device served is stored. This agent speaks MQTT 3.1.1 (the
fallback for brokers without MQTT 5), so that path is exercised end to end too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.config import config_from_mapping
from edge_agent.runner import run_agent
from firmware_sim.stack import InfluxServer, MosquittoServer
from shared.messages import Quality
from tests.edge_agent.support import (
    CloudRunner,
    CountingDevice,
    agent_config,
    cloud,
    good_values,
    influx_points,
    until,
)

pytestmark = pytest.mark.integration


async def test_device_outage_is_reported_as_comm_failure_then_values_resume(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gateway, db = unique_name("site"), unique_name("gw"), unique_name("db")
    ingest = CloudRunner(lambda: cloud(mosquitto, influxd, db, unique_name("c"), tmp_path))
    device = CountingDevice()
    await device.start()
    await ingest.start()
    values = agent_config(
        site=site,
        gateway=gateway,
        broker=mosquitto,
        device_port=device.port,
        spool_path=tmp_path / "spool.db",
    )
    values["broker"]["protocol"] = "3.1.1"
    config = config_from_mapping(values, use_env=False)
    stop = asyncio.Event()
    ready: asyncio.Future[Agent] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_agent(config, stop=stop, handle_signals=False, on_ready=ready))
    try:
        agent = await asyncio.wait_for(ready, 15)
        await until(lambda: device.count >= 10, 20, "readings")
        await device.stop()
        health = agent.pollers["plc1"].health
        await until(lambda: health.comm_failures >= 10, 20, "comm-failure readings")
        assert health.last_error is None or isinstance(health.last_error, str)
        await device.start()  # same port
        resumed_from = device.count
        await until(lambda: device.count >= resumed_from + 10, 20, "values again")
    finally:
        stop.set()
        final = await asyncio.wait_for(task, 30)
        await device.stop()
        await ingest.stop()
    (source,) = final.sources
    assert source.comm_failures >= 10
    assert source.last_good_ms is not None
    points = (await influx_points(influxd, db, gateway))["cnt"]
    assert good_values(points) == set(range(1, device.count + 1))
    outage = [t for t, (value, q) in points.items() if q == Quality.COMM_FAILURE]
    assert len(outage) >= 10
    assert all(points[t][0] is None for t in outage)
    times = sorted(points)
    first_fail, last_fail = min(outage), max(outage)
    # the outage is one contiguous stretch of the series, values on both sides
    assert all(points[t][1] == Quality.COMM_FAILURE for t in times if first_fail <= t <= last_fail)
    assert times[0] < first_fail
    assert times[-1] > last_fail
