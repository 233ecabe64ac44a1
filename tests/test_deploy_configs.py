"""The configs shipped for docker-compose users are valid for the code they run."""

from __future__ import annotations

from pathlib import Path

from cloud_service.settings import load_settings
from edge_agent.config import load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_compose_configs_load() -> None:
    edge = load_config(DEPLOY / "edge.toml")
    cloud = load_settings(DEPLOY / "cloud.toml")
    assert edge.broker.host == cloud.mqtt.host == "mosquitto"
    assert cloud.influx.url == "http://influxdb:8086"
