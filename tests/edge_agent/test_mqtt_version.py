"""The MQTT version choice: 5, falling back to 3.1.1 when the broker refuses it (no I/O)."""

from __future__ import annotations

import pytest

from edge_agent.mqtt_version import (
    UNSUPPORTED_PROTOCOL_VERSION,
    V5,
    V311,
    V311_UNACCEPTABLE_PROTOCOL_VERSION,
    VersionChoice,
)

NOT_AUTHORIZED = 0x87
SERVER_UNAVAILABLE = 0x88


@pytest.mark.parametrize("code", [UNSUPPORTED_PROTOCOL_VERSION, V311_UNACCEPTABLE_PROTOCOL_VERSION])
def test_auto_falls_back_on_a_version_refusal_and_stays_there(code: int) -> None:
    choice = VersionChoice("auto")
    assert choice.version == V5
    assert choice.describe == "5 (auto, not yet confirmed)"
    assert choice.refused(code) is True
    assert choice.version == V311
    assert f"CONNACK 0x{code:02x}" in choice.describe
    # 3.1.1 refused as well, or connected, or dropped: it stays 3.1.1 for the session.
    assert choice.refused(code) is False
    assert choice.closed_without_connack() is False
    choice.connected()
    assert choice.closed_without_connack() is False
    assert choice.version == V311
    assert choice.describe.startswith("3.1.1 (auto: fell back from 5")


def test_other_refusals_do_not_change_the_version() -> None:
    choice = VersionChoice("auto")
    for code in (NOT_AUTHORIZED, SERVER_UNAVAILABLE, 0x85):
        assert choice.refused(code) is False
    assert choice.version == V5
    assert choice.fell_back_because is None


def test_silent_closes_fall_back_only_when_repeated_in_a_row() -> None:
    choice = VersionChoice("auto", silent_closes=2)
    assert choice.closed_without_connack() is False  # one lost connection proves nothing
    assert choice.refused(NOT_AUTHORIZED) is False  # the broker answered: the count restarts
    assert choice.closed_without_connack() is False
    assert choice.version == V5
    assert choice.closed_without_connack() is True
    assert choice.version == V311
    assert "closed 2 connection(s)" in choice.describe


def test_a_confirmed_v5_broker_is_never_downgraded() -> None:
    choice = VersionChoice("auto")
    choice.connected()
    assert choice.describe == "5 (auto)"
    assert choice.refused(UNSUPPORTED_PROTOCOL_VERSION) is False
    for _ in range(5):
        assert choice.closed_without_connack() is False
    assert choice.version == V5


@pytest.mark.parametrize(("setting", "version"), [("5", V5), ("3.1.1", V311)])
def test_a_pinned_version_never_changes(setting: str, version: str) -> None:
    choice = VersionChoice(setting)  # type: ignore[arg-type]
    assert choice.version == version
    assert choice.refused(UNSUPPORTED_PROTOCOL_VERSION) is False
    assert choice.refused(V311_UNACCEPTABLE_PROTOCOL_VERSION) is False
    for _ in range(5):
        assert choice.closed_without_connack() is False
    assert choice.version == version
    assert choice.describe == f"{version} (pinned)"
