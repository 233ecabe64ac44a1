"""The andon coil: which alerts light it (pure), when it is written (pure), and the driver
against a real Modbus TCP server (pymodbus) that goes away and comes back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.andon import AndonDriver, CoilState, andon_target, light_wanted
from edge_agent.config import AndonConfig, config_from_mapping, load_config
from edge_agent.errors import ConfigError
from shared.messages import Alert, AlertState, Severity
from tests.edge_agent.support import CoilDevice

T0 = 1_790_000_000_000


def alert(alert_id: str = "a1", **kw: Any) -> Alert:
    values: dict[str, Any] = {
        "id": alert_id,
        "rule": "stockout-risk",
        "severity": Severity.CRITICAL,
        "state": AlertState.ACTIVE,
        "subject": "SKU-1",
        "title": "Stock-out of SKU-1",
        "raised": T0,
        "updated": T0,
    }
    values.update(kw)
    return Alert(**values)


CRITICAL = [Severity.CRITICAL]


def test_which_alerts_light_the_andon() -> None:
    assert not light_wanted([], CRITICAL, unacknowledged_only=False)
    assert light_wanted([alert()], CRITICAL, unacknowledged_only=False)
    assert not light_wanted([alert(severity=Severity.WARNING)], CRITICAL, unacknowledged_only=False)
    both = [Severity.CRITICAL, Severity.WARNING]
    assert light_wanted([alert(severity=Severity.WARNING)], both, unacknowledged_only=False)
    assert not light_wanted([alert(state=AlertState.CLEARED)], CRITICAL, unacknowledged_only=False)
    acked = alert(acked=True)
    assert light_wanted([acked], CRITICAL, unacknowledged_only=False)  # active is enough
    assert not light_wanted([acked], CRITICAL, unacknowledged_only=True)
    assert light_wanted([acked, alert("a2")], CRITICAL, unacknowledged_only=True)


def test_coil_state_writes_changes_at_once_retries_and_refreshes() -> None:
    s = CoilState(retry_s=2.0, refresh_s=30.0)
    assert s.due(0.0)  # never written: write OFF at start (a light left on by a crash goes out)
    s.wrote(False, 0.0)
    assert not s.due(1.0)
    s.set_wanted(True)
    assert s.due(1.0)  # a change: at once
    s.failed("down", 1.0)
    assert s.written is None
    assert not s.due(2.9)  # retry wait
    assert s.due(3.0)
    s.failed("down", 3.0)
    s.set_wanted(False)
    assert s.due(3.1)  # a change does not wait for the retry
    s.wrote(False, 3.1)
    assert (s.writes, s.failures, s.last_error) == (2, 2, None)
    assert not s.due(33.0)
    assert s.due(33.1)  # refresh


BASE = {
    "site": "p1",
    "gateway": "g1",
    "sources": [
        {"type": "modbus", "id": "plc1", "host": "10.0.0.9", "port": 5020, "unit_id": 3},
        {"type": "http", "id": "mes", "url": "http://mes/x"},
    ],
    "signals": [{"id": "s", "source": "plc1", "address": 0, "kind": "sensor"}],
}


def test_andon_config_by_source_or_host() -> None:
    cfg = config_from_mapping({**BASE, "andon": {"source": "plc1", "coil": 7}}, use_env=False)
    assert cfg.andon == AndonConfig(source="plc1", coil=7)
    assert cfg.andon.severities == [Severity.CRITICAL]
    target = andon_target(cfg)
    assert target is not None
    assert (target.host, target.port, target.unit_id, target.coil) == ("10.0.0.9", 5020, 3, 7)
    own = config_from_mapping(
        {**BASE, "andon": {"host": "10.0.0.50", "coil": 0, "severities": ["critical", "warning"]}},
        use_env=False,
    )
    target = andon_target(own)
    assert target is not None
    assert (target.host, target.port, target.unit_id) == ("10.0.0.50", 502, 1)
    assert andon_target(config_from_mapping(BASE, use_env=False)) is None


@pytest.mark.parametrize(
    ("andon", "field", "message"),
    [
        ({"source": "plc9", "coil": 1}, "andon.source", "unknown source 'plc9'"),
        ({"source": "mes", "coil": 1}, "andon.source", "'mes' is http, not modbus"),
        ({"coil": 1}, "andon", "either source"),
        ({"source": "plc1", "host": "x", "coil": 1}, "andon", "not both"),
        ({"source": "plc1"}, "andon.coil", "Field required"),
        ({"source": "plc1", "coil": 70000}, "andon.coil", "<= 65535"),
        ({"source": "plc1", "coil": 1, "severities": ["urgent"]}, "andon.severities", "critical"),
        ({"source": "plc1", "coil": 1, "severities": []}, "andon.severities", ">= 1"),
    ],
)
def test_andon_config_errors_are_named(andon: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping({**BASE, "andon": andon}, use_env=False)
    found = {i.field: i.message for i in exc.value.issues}
    assert field in found, found
    assert message in found[field]


def test_andon_section_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        'site = "p1"\ngateway = "g1"\n[andon]\nsource = "plc1"\ncoil = 4\n'
        "unacknowledged_only = true\n"
        '[[sources]]\ntype = "modbus"\nid = "plc1"\nhost = "127.0.0.1"\n'
        '[[signals]]\nid = "s"\nsource = "plc1"\naddress = 0\nkind = "sensor"\n'
    )
    cfg = load_config(path)
    assert cfg.andon is not None
    assert (cfg.andon.coil, cfg.andon.unacknowledged_only) == (4, True)


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_driver_against_a_real_device_that_dies_and_comes_back() -> None:
    alerts: list[Alert] = []
    ticks = Ticks()
    device = CoilDevice()
    cfg = config_from_mapping(
        {
            **BASE,
            "andon": {
                "host": "127.0.0.1",
                "port": device.port,
                "coil": 5,
                "retry_s": 2,
                "refresh_s": 30,
                "timeout_s": 0.5,
            },
        },
        use_env=False,
    )
    assert cfg.andon is not None
    target = andon_target(cfg)
    assert target is not None
    driver = AndonDriver(cfg.andon, target, lambda: alerts, monotonic=ticks)
    try:
        await device.start()
        await driver.step()
        assert device.writes == [(5, False)]  # OFF at start
        alerts.append(alert())
        await driver.step()
        assert device.value(5) is True
        assert driver.status.lit is True
        await driver.step()
        assert len(device.writes) == 2  # no change, no refresh due: nothing written

        await device.stop()  # the PLC goes away...
        alerts.clear()
        await driver.step()
        assert driver.status.failures == 1
        assert driver.status.lit is None
        assert driver.status.last_error
        await device.start()  # ...and comes back with its coils cleared
        await driver.step()
        assert device.writes == []  # still waiting out the retry
        ticks.now += 2.0
        await driver.step()
        assert device.writes == [(5, False)]
        assert driver.status.last_error is None

        alerts.append(alert())
        await driver.step()
        await device.stop()
        await device.start()  # a restart the driver did not see: the refresh fixes it
        ticks.now += 30.0
        await driver.step()
        assert device.writes == [(5, True)]
        assert driver.status.writes == 5
    finally:
        await driver.stop()
        await device.stop()


async def test_a_refused_write_is_a_failure() -> None:
    async with CoilDevice() as device:
        cfg = config_from_mapping(
            {**BASE, "andon": {"host": "127.0.0.1", "port": device.port, "coil": 4000}},
            use_env=False,
        )
        assert cfg.andon is not None
        target = andon_target(cfg)
        assert target is not None
        driver = AndonDriver(cfg.andon, target, lambda: [alert()])
        try:
            await driver.step()
        finally:
            await driver.stop()
        assert driver.status.failures == 1
        assert "refused" in (driver.status.last_error or "")
        assert device.writes == []
