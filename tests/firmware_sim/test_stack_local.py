"""The demo's ``LocalStack`` must start both services and leave nothing behind."""

from __future__ import annotations

import httpx
import pytest

from firmware_sim.stack import LocalStack, mqtt_connack_code

pytestmark = pytest.mark.integration


def test_local_stack_starts_both_and_cleans_up() -> None:
    with LocalStack() as stack:
        workdir = stack.workdir
        assert mqtt_connack_code(stack.mqtt_host, stack.mqtt_port) == 0
        assert httpx.get(f"{stack.influx_url}/ping", timeout=5).status_code == 204
        assert stack.mosquitto.port != 1883  # never the system broker

    assert not stack.mosquitto.is_running()
    assert not stack.influx.is_running()
    assert not workdir.exists()  # a temporary folder it created itself
