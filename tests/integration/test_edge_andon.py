"""The andon light end to end: alerts published on a real Mosquitto reach the agent, which
drives a coil of a real Modbus TCP server (pymodbus) while a critical alert is active."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import Agent
from edge_agent.config import config_from_mapping
from edge_agent.runner import run_agent
from edge_agent.status import render_text
from firmware_sim.stack import MosquittoServer
from shared.messages import AlertState, Severity
from tests.edge_agent.support import CoilDevice, CountingDevice, agent_config, until
from tests.integration.test_edge_alerts import alert, publish_alert

pytestmark = pytest.mark.integration

COIL = 3


async def test_the_coil_follows_critical_alerts(
    fresh_mosquitto: Callable[..., MosquittoServer],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    broker = fresh_mosquitto()
    site, gateway = unique_name("site"), unique_name("gw")
    async with CountingDevice() as plc, CoilDevice() as andon:
        values = agent_config(
            site=site,
            gateway=gateway,
            broker=broker,
            device_port=plc.port,
            spool_path=tmp_path / "spool.db",
            andon={"host": "127.0.0.1", "port": andon.port, "coil": COIL, "retry_s": 0.2},
        )
        config = config_from_mapping(values, use_env=False)
        stop = asyncio.Event()
        ready: asyncio.Future[Agent] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            run_agent(config, stop=stop, handle_signals=False, on_ready=ready)
        )
        agent = await asyncio.wait_for(ready, 15)
        try:
            await until(lambda: andon.value(COIL) is False, 10, "the coil switched OFF at start")

            def publish(**kw: Any) -> None:
                publish_alert(broker, site, gateway, alert(**kw))

            await asyncio.to_thread(publish, alert_id="w1", severity=Severity.WARNING)
            await until(lambda: agent.alerts.get("w1") is not None, 10, "the warning")
            await asyncio.sleep(0.5)
            assert andon.value(COIL) is False  # a warning does not light it

            await asyncio.to_thread(publish, alert_id="c1")
            await until(lambda: andon.value(COIL) is True, 10, "the coil ON")
            assert agent.andon is not None
            assert agent.snapshot().andon is not None
            assert agent.snapshot().andon.lit is True  # type: ignore[union-attr]

            lines = render_text(agent.snapshot())
            assert f"andon 127.0.0.1:{andon.port}/1 coil {COIL}: ON (" in "\n".join(lines)
            # The cloud clears the alert: the light goes out.
            await asyncio.to_thread(
                publish, alert_id="c1", state=AlertState.CLEARED, updated=1_790_000_001_000
            )
            await until(lambda: andon.value(COIL) is False, 10, "the coil OFF again")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
