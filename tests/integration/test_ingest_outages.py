"""Outages with real processes: nothing a gateway published is lost.

* influxd stopped mid-stream: ingest stops acking (the broker keeps the messages in the
  persistent session), reports back-pressure, and catches up by itself after the restart;
* the ingest worker killed with SIGKILL mid-stream (``cloud-service run`` as a subprocess):
  un-acked messages are redelivered to its successor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ingest_support import (
    Publisher,
    batch,
    cloud_settings,
    expected_times,
    influx_store,
    sqlite_url,
    stored_times,
    until,
)

from cloud_service.app import build_app
from firmware_sim.stack import InfluxServer, MosquittoServer

pytestmark = pytest.mark.integration

BATCHES, READINGS = 150, 40


def _stream(pub: Publisher, seqs: range, t0: int, pace_s: float) -> threading.Thread:
    """Publish in the background at a steady pace, like a gateway: each batch says which seq
    it still holds un-acked (``first_unacked``), from the acks it got so far."""

    def run() -> None:
        for i, seq in enumerate(seqs):
            first_unacked = min(pub.highest_ack() + 1, seq)
            pub.publish(batch(pub.gateway, seq, READINGS, t0=t0, first_unacked=first_unacked))
            if i % 5 == 4:
                time.sleep(pace_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_influxd_stopped_mid_stream_loses_nothing(
    mosquitto: MosquittoServer,
    fresh_influxd: Callable[..., InfluxServer],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    influxd = fresh_influxd()
    site, gw = unique_name("site"), unique_name("gw")
    settings = cloud_settings(mosquitto, influxd, unique_name, sqlite_url(tmp_path))
    app = build_app(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    pub = Publisher(mosquitto, site, gw)
    t0 = int(time.time() * 1000) - 600_000
    seqs = range(1, BATCHES + 1)
    try:
        await app.ingest.wait_connected()
        await asyncio.sleep(0.2)
        publisher = _stream(pub, seqs, t0, 0.02)
        await until(lambda: pub.highest_ack() >= 10, 30, "first acks")
        await asyncio.to_thread(influxd.stop)

        # Down: reported, acks withheld, messages held at the broker.
        await until(lambda: app.ingest.stats.backpressure, 30, "back-pressure to be reported")
        assert not app.ingest.stats.store_up
        assert app.metrics.value("flightdeck_ingest_backpressure") == 1
        assert app.metrics.value("flightdeck_ingest_store_up", target="timeseries") == 0
        assert app.ingest.stats.unacked > 0
        await asyncio.to_thread(publisher.join, 60)
        held = pub.highest_ack()
        assert held < BATCHES  # the outage really was mid-stream

        await asyncio.to_thread(influxd.start)
        await until(lambda: pub.highest_ack() >= BATCHES, 60, f"ack of seq {BATCHES}")
        assert app.ingest.stats.store_up
        assert not app.ingest.stats.backpressure
        assert app.metrics.value("flightdeck_ingest_backpressure") == 0
        assert app.metrics.value("flightdeck_ingest_write_retries_total", target="timeseries") > 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        pub.close()
    async with influx_store(influxd, settings.influx.database) as store:
        assert await stored_times(store, "unclassified", gw) == expected_times(t0, seqs, READINGS)


async def _poke(pub: Publisher, payload: bytes) -> bool:
    if pub.highest_ack() >= 1:
        return True
    pub.publish(payload)
    await asyncio.sleep(0.3)
    return pub.highest_ack() >= 1


def _config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cloud_service.cli", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
        )


async def test_worker_killed_mid_stream_loses_nothing(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gw, database = unique_name("site"), unique_name("gw"), unique_name("db")
    config = _config(
        tmp_path / "cloud.toml",
        f"""
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
client_id = "{unique_name("cloud")}"
share_group = "{unique_name("grp")}"

[influx]
url = "{influxd.url}"
database = "{database}"

[ingest]
max_age_s = 0.05
status_log_s = 1.0

[metadata]
url = "{sqlite_url(tmp_path)}"

[api]
port = 0
""",
    )
    log = tmp_path / "cloud.log"
    pub = Publisher(mosquitto, site, gw)
    t0 = int(time.time() * 1000) - 600_000
    seqs = range(1, BATCHES + 1)
    first = _spawn(config, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        # Until the worker has subscribed, nobody receives: repeat batch 1 (idempotent).
        first_batch = batch(gw, 1, READINGS, t0=t0)
        await until(lambda: _poke(pub, first_batch), 60, f"the worker to ack ({log})")
        publisher = _stream(pub, seqs[1:], t0, 0.03)
        await until(lambda: pub.highest_ack() >= 20, 60, "acks mid-stream")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        killed_at = pub.highest_ack()
        await asyncio.to_thread(publisher.join, 60)
        assert killed_at < BATCHES  # killed mid-stream

        second = _spawn(config, log)  # same client id: resumes the persistent session
        await until(lambda: pub.highest_ack() >= BATCHES, 60, f"ack of seq {BATCHES} ({log})")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
        pub.close()
    assert second is not None
    assert second.returncode == 0, log.read_text()[-3000:]
    async with influx_store(influxd, database) as store:
        assert await stored_times(store, "unclassified", gw) == expected_times(t0, seqs, READINGS)
