"""Alerts at the plant: the cloud's alerts are kept (across restarts), shown on the status page
and by ``edge-agent status``, acknowledged there by an operator, and the acknowledgement is
published on ``alert-acks``, spooled while the broker is unreachable.

The cloud side is played by a plain MQTT client publishing contract ``Alert`` messages: the
contract, not the cloud's alerting code, is what the agent depends on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_agent.cli import main
from edge_agent.status_server import http_request
from firmware_sim.stack import MosquittoServer
from shared.codec import encode
from shared.messages import Alert, AlertState, Severity
from shared.topics import TopicScheme
from tests.edge_agent.support import AgentRun, CountingDevice, Recorder, agent_config, until

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000


def alert(alert_id: str, **kw: Any) -> Alert:
    values: dict[str, Any] = {
        "id": alert_id,
        "rule": "stockout-risk",
        "severity": Severity.CRITICAL,
        "state": AlertState.ACTIVE,
        "subject": "SKU-1",
        "title": "Stock-out of SKU-1 in <3 days",
        "action": "Expedite PO 4711",
        "raised": T0,
        "updated": T0,
    }
    values.update(kw)
    return Alert(**values)


def publish_alert(broker: MosquittoServer, site: str, gateway: str, a: Alert) -> None:
    """What the cloud does: QoS 1, retained, on the alert's own topic."""
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_publish = lambda *_: done.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    topic = TopicScheme().alert_topic(site, gateway, a.id)
    client.publish(topic, encode(a), qos=1, retain=True)
    assert done.wait(5)
    client.disconnect()
    client.loop_stop()


async def test_alerts_are_shown_acknowledged_and_the_ack_survives_an_outage(
    fresh_mosquitto: Callable[..., MosquittoServer],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker = fresh_mosquitto()
    site, gateway = unique_name("site"), unique_name("gw")
    recorder = Recorder(broker, site, gateway)
    async with CountingDevice() as device:
        values = agent_config(
            site=site,
            gateway=gateway,
            broker=broker,
            device_port=device.port,
            spool_path=tmp_path / "spool.db",
            status={"enabled": True, "port": 0},
        )
        run = AgentRun(values)
        agent = await run.start()
        await until(lambda: agent.outbox.connected, 10, "connection")
        port = agent.status_port
        assert port is not None
        values["status"]["port"] = port  # the CLI reads the port from the file
        config_file = tmp_path / "gw.toml"
        _write_toml(config_file, values)

        publish_alert(broker, site, gateway, alert("a1"))
        publish_alert(broker, site, gateway, alert("a2", severity=Severity.WARNING, title="Low"))
        await until(lambda: len(agent.alerts.active()) == 2, 10, "two active alerts")

        page = (await http_request("127.0.0.1", port, "GET", "/")).decode()
        assert "Stock-out of SKU-1 in &lt;3 days" in page  # escaped
        assert "Expedite PO 4711" in page
        assert await asyncio.to_thread(main, ["status", str(config_file)]) == 0
        out = capsys.readouterr().out
        assert "[critical] a1 Stock-out of SKU-1 in <3 days (SKU-1), UNACKNOWLEDGED" in out

        body = b"operator=Ana&comment=line+3+informed"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        await http_request("127.0.0.1", port, "POST", "/alerts/a1/ack", body=body, headers=headers)
        await until(lambda: len(recorder.snapshot()[2]) == 1, 10, "the alert ack on the broker")
        (ack,) = recorder.snapshot()[2]
        assert (ack.alert, ack.gateway, ack.operator, ack.comment) == (
            "a1",
            gateway,
            "Ana",
            "line 3 informed",
        )
        assert agent.alerts.get("a1") is not None
        assert agent.alerts.get("a1").acked  # type: ignore[union-attr]

        # the broker goes away; an operator acknowledges a2 from the command line meanwhile
        await asyncio.to_thread(broker.stop)
        await until(lambda: not agent.outbox.connected, 10, "the outage")
        ack_cli = ["ack", str(config_file), "a2", "--operator", "Ben"]
        assert await asyncio.to_thread(main, ack_cli) == 0
        assert len(agent.alerts.pending_acks()) == 1
        await run.finish()  # the agent stops too: the ack must survive in the spool

        await asyncio.to_thread(broker.start)
        recorder.close()
        recorder = Recorder(broker, site, gateway)
        run = AgentRun(values | {"status": {"enabled": False}})
        agent = await run.start()
        assert {a.id for a in agent.alerts.active()} == {"a1", "a2"}  # kept across the restart
        await until(lambda: len(recorder.snapshot()[2]) == 1, 10, "the spooled alert ack")
        assert recorder.snapshot()[2][0].alert == "a2"
        await until(lambda: not agent.alerts.pending_acks(), 10, "the outbox to empty")

        publish_alert(broker, site, gateway, alert("a1", state=AlertState.CLEARED, updated=T0 + 1))
        publish_alert(broker, site, gateway, alert("a2", updated=T0 - 5))  # stale: ignored
        await until(lambda: [a.id for a in agent.alerts.active()] == ["a2"], 10, "a1 cleared")
        assert agent.alerts.get("a2").acked  # type: ignore[union-attr]
        await run.finish()
    recorder.close()


def _write_toml(path: Path, values: dict[str, Any]) -> None:
    lines = [f'site = "{values["site"]}"', f'gateway = "{values["gateway"]}"']
    for section in ("broker", "spool", "status"):
        lines.append(f"[{section}]")
        for key, value in values[section].items():
            lines.append(f"{key} = {_toml(value)}")
    for table in ("sources", "signals"):
        for item in values[table]:
            lines.append(f"[[{table}]]")
            lines.extend(f"{key} = {_toml(value)}" for key, value in item.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
