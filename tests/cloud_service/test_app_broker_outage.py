"""A broker outage after start-up is the cloud's silence, not the gateways': health is held
while ingest cannot hear the broker and resumes, with fresh windows, when it reconnects
(before, every gateway went offline after the outage's first five minutes). Real Mosquitto,
stopped and started again on the same port, and the real app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud_service.app import build_app
from cloud_service.settings import load_settings
from firmware_sim.stack import InfluxServer, MosquittoServer

pytestmark = pytest.mark.integration


async def until(check: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_health_is_held_while_the_broker_is_gone_and_resumes_after(
    influxd: InfluxServer, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    broker = MosquittoServer(tmp_path / "mq")
    broker.start()
    settings = load_settings(
        None,
        mqtt={"host": broker.host, "port": broker.port, "client_id": unique_name("cloud"),
              "share_group": unique_name("grp")},
        influx={"url": influxd.url, "database": unique_name("db")},
        metadata={"url": f"sqlite+aiosqlite:///{tmp_path / 'meta.sqlite'}"},
        ingest={"peer_reports": False},
        api={"enabled": False},
    )  # fmt: skip
    app = build_app(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await app.ingest.wait_connected(20)
        health = app.ingest.health
        await until(lambda: not health.held, 10, "health resumed at start-up")
        first = health.resumed_ms
        broker.stop()
        await until(lambda: health.held, 10, "health held once the broker is gone")
        await asyncio.sleep(0.5)
        broker.start()
        await until(lambda: not health.held, 30, "health resumed on reconnecting")
        assert health.resumed_ms is not None
        assert first is not None
        assert health.resumed_ms > first
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        broker.stop()
