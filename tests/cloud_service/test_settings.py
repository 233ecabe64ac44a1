"""Settings: new sections, defaults that matter, and old configs still loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_service.errors import ConfigError
from cloud_service.settings import load_settings


def test_defaults_write_two_at_a_time_and_keep_dead_letters_in_sqlite() -> None:
    s = load_settings(None)
    assert s.ingest.writes_in_flight == 2
    assert s.metadata.url.get_secret_value().startswith("sqlite+aiosqlite:///")
    assert s.metadata.sqlite_synchronous == "FULL"
    assert s.metrics.port is None


def test_an_old_config_with_a_dead_letter_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "cloud.toml"
    path.write_text('[ingest]\ndead_letter_file = "var/dead.jsonl"\n')
    assert load_settings(path).ingest.dead_letter_file == Path("var/dead.jsonl")


def test_the_metadata_password_is_not_printed() -> None:
    s = load_settings(None, metadata={"url": "postgresql+asyncpg://u:hunter2@db/x"})
    assert "hunter2" not in s.model_dump_json()
    assert "hunter2" in s.metadata.url.get_secret_value()


def test_bad_values_are_reported_by_field() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, ingest={"writes_in_flight": 0}, health={"stale_after_periods": 1})
    assert {p for p, _ in info.value.problems} == {
        "ingest.writes_in_flight",
        "health.stale_after_periods",
    }


def test_a_malformed_json_environment_override_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLIGHTDECK_CLOUD_MQTT", '{"host": ')
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    [(field, message)] = info.value.problems
    assert field == "mqtt"
    assert "FLIGHTDECK_CLOUD_MQTT is not valid JSON" in message
    assert info.value.source == "the environment"


def test_a_well_formed_json_environment_override_still_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLIGHTDECK_CLOUD_MQTT", '{"host": "broker.example", "port": 8883}')
    s = load_settings(None)
    assert (s.mqtt.host, s.mqtt.port) == ("broker.example", 8883)


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cloud.toml"
    path.write_bytes('[influx]\nurl = "http://hé:8086"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.source == str(path)
    [(field, message)] = info.value.problems
    assert field == "(file)"
    assert "not UTF-8" in message
    assert "0xe9" in message
