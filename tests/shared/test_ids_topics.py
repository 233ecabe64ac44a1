"""The id rule and the topic tree: no id can escape its place in a topic, a line or a query."""

from __future__ import annotations

import pytest
from contract_strategies import FORBIDDEN, bad_ids, ids
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ContractError, Reason
from shared.ids import InvalidIdError, check_id, is_valid_id
from shared.topics import Channel, TopicAddress, TopicScheme


@given(ids)
def test_generated_ids_are_valid_and_contain_no_forbidden_character(value: str) -> None:
    assert is_valid_id(value)
    assert not set(value) & set(FORBIDDEN)


@given(bad_ids)
def test_bad_ids_are_refused(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidIdError) as info:
        check_id(value, "signal")
    assert info.value.kind == "signal"


@given(st.text())
def test_any_valid_text_id_has_only_allowed_characters(value: str) -> None:
    if is_valid_id(value):
        assert 1 <= len(value) <= 64
        assert value[0].isascii()
        assert value[0].isalnum()
        assert all(c.isascii() and (c.isalnum() or c in "_.:-") for c in value)


@pytest.mark.parametrize("value", ["abc\n", "a+b", "#", "a/b", "$SYS", "a b", 'a"b', "a,b", "a=b"])
def test_classic_injection_ids_are_refused(value: str) -> None:
    assert not is_valid_id(value)


@given(site=ids, gateway=ids, channel=st.sampled_from(Channel))
def test_topic_round_trip(site: str, gateway: str, channel: Channel) -> None:
    scheme = TopicScheme()
    topic = scheme.topic(site, gateway, channel)
    assert topic.startswith("flightdeck/v1/")
    assert scheme.parse(topic) == TopicAddress(site, gateway, channel)


@given(site=bad_ids, gateway=ids)
def test_topic_refuses_bad_ids_when_building(site: str, gateway: str) -> None:
    with pytest.raises(InvalidIdError):
        TopicScheme().topic(site, gateway, Channel.TELEMETRY)


@pytest.mark.parametrize(
    "topic",
    [
        "flightdeck/v1/s1/gw1/unknown",
        "flightdeck/v1/s1/gw1",
        "flightdeck/v1/s1/gw1/telemetry/extra",
        "flightdeck/v1/s+/gw1/telemetry",
        "flightdeck/v1/s1/#/telemetry",
        "other/v1/s1/gw1/telemetry",
        "xflightdeck/v1/s1/gw1/telemetry",
        "flightdeck/v1//gw1/telemetry",
    ],
)
def test_parse_refuses_topics_outside_the_tree(topic: str) -> None:
    with pytest.raises(ContractError) as info:
        TopicScheme().parse(topic)
    assert info.value.reason is Reason.BAD_TOPIC


def test_custom_prefix_and_subscriptions() -> None:
    scheme = TopicScheme("acme/plant-net/v1")
    assert scheme.topic("s1", "g1", Channel.ACK) == "acme/plant-net/v1/s1/g1/ack"
    assert scheme.subscription(Channel.TELEMETRY) == "acme/plant-net/v1/+/+/telemetry"
    assert scheme.subscription(Channel.ALERTS, site="s1", gateway="g1") == (
        "acme/plant-net/v1/s1/g1/alerts"
    )
    assert scheme.shared_subscription("ingest", Channel.TELEMETRY) == (
        "$share/ingest/acme/plant-net/v1/+/+/telemetry"
    )
    with pytest.raises(InvalidIdError):
        TopicScheme("acme/+/v1")


@given(site=ids, gateway=ids, alert=ids)
def test_alert_topics_round_trip(site: str, gateway: str, alert: str) -> None:
    scheme = TopicScheme()
    topic = scheme.alert_topic(site, gateway, alert)
    assert scheme.parse(topic) == TopicAddress(site, gateway, Channel.ALERTS, alert)
    assert scheme.alerts_subscription(site, gateway) == f"flightdeck/v1/{site}/{gateway}/alerts/+"


@pytest.mark.parametrize(
    "topic",
    [
        "flightdeck/v1/s1/gw1/alerts/a+b",
        "flightdeck/v1/s1/gw1/telemetry/x1",
        "flightdeck/v1/s1/gw1/alerts/",
    ],
)
def test_only_alerts_take_a_fourth_level(topic: str) -> None:
    with pytest.raises(ContractError):
        TopicScheme().parse(topic)
