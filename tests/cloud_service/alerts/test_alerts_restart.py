"""A process killed with SIGKILL after raising an alert still delivers it after a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alerts_support import Receiver, running
from pydantic import SecretStr

from cloud_service.alerts.dispatcher import Dispatcher, wall_ms
from cloud_service.alerts.outbox import OutboxPolicy, Status
from cloud_service.alerts.routing import Router
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import (
    AlertSettings,
    MqttAlertSettings,
    WebhookEndpoint,
    WebhookSettings,
)
from cloud_service.alerts.store import SqlAlertStore, create_sqlite_engine
from cloud_service.alerts.webhooks import Verifier, WebhookSink, new_secret

REPO = Path(__file__).resolve().parents[3]
SECRET = new_secret()

CHILD = r"""
import asyncio, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from alerts_support import condition
from test_alerts_restart import settings_for
from cloud_service.alerts.dispatcher import Dispatcher
from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.routing import Router
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.store import SqlAlertStore, create_sqlite_engine, create_tables
from cloud_service.alerts.webhooks import WebhookSink

async def main(db: str, url: str, mode: str) -> None:
    engine = create_sqlite_engine(Path(db))
    await create_tables(engine)
    store = SqlAlertStore(engine)
    settings = settings_for(url)
    policy = OutboxPolicy.from_settings(settings.outbox)
    router = Router(settings, policy)
    service = await AlertService.open(store, router)
    (event,) = await service.observe([condition()], time.time_ns() // 1_000_000)
    print("RAISED", event.alert.id, flush=True)
    if mode == "before-send":
        await asyncio.sleep(3600)
    sink = WebhookSink(settings.webhooks)
    await Dispatcher(store, {"webhook": sink}, policy, router.summary).run_once()
    print("UNEXPECTED: delivered", flush=True)

asyncio.run(main(*sys.argv[1:4]))
"""


def settings_for(url: str) -> AlertSettings:
    endpoint = WebhookEndpoint(name="ops", url=url, secrets=[SecretStr(SECRET)])
    return AlertSettings(
        webhooks=WebhookSettings(endpoints=[endpoint], allow_networks=["127.0.0.1/32"]),  # type: ignore[list-item]
        mqtt=MqttAlertSettings(enabled=False),
    )


def raise_then_kill(db: Path, receiver: Receiver, mode: str) -> str:
    """Run the child until it has raised (and, mid-send, is sending); SIGKILL it."""
    here = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), here])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), receiver.url, mode, here],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert child.stdout is not None
    try:
        line = child.stdout.readline()
        assert line.startswith("RAISED "), line
        if mode == "mid-send":
            assert receiver.got_request.wait(60), "the child never sent"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return line.split()[1]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["before-send", "mid-send"])
async def test_sigkill_between_raising_and_delivering_still_delivers(
    tmp_path: Path, mode: str
) -> None:
    db = tmp_path / "alerts.sqlite"
    with running(Receiver(hold_first=mode == "mid-send")) as receiver:
        alert_id = raise_then_kill(db, receiver, mode)
        receiver.release.set()
        assert receiver.accepted == []

        engine = create_sqlite_engine(db)
        store = SqlAlertStore(engine)
        settings = settings_for(receiver.url)
        policy = OutboxPolicy.from_settings(settings.outbox)
        router = Router(settings, policy)
        try:
            service = await AlertService.open(store, router)
            assert [a.id for a in service.open_alerts()] == [alert_id]
            sink = WebhookSink(settings.webhooks)
            d = Dispatcher(store, {"webhook": sink}, policy, router.summary)
            # The killed process's lease runs out after lease_s; step past it, don't wait.
            report = await d.run_once(wall_ms() + int(settings.outbox.lease_s * 1000) + 1)
            await sink.aclose()
            assert report.count(Status.DELIVERED) == 1
            (row,) = await store.notifications(alert_id)
        finally:
            await engine.dispose()
    (accepted,) = receiver.accepted
    assert Verifier([SECRET]).verify(accepted.headers, accepted.body, now_s=time.time()) == row.id
    assert row.status == Status.DELIVERED
    if mode == "mid-send":  # the same notification id as the attempt the kill cut off
        assert [h.headers["webhook-id"] for h in receiver.held] == [row.id]
