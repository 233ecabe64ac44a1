"""The alert wire additions stay backward compatible: optional fields an older receiver
ignores and an older sender omits, and a new retained ``alert-index`` topic."""

from __future__ import annotations

import msgspec
import pytest

from shared.codec import MessageDecoder, encode
from shared.errors import ContractError
from shared.messages import Alert, AlertIndex, AlertState, Severity
from shared.topics import Channel, TopicScheme

T0 = 1_790_000_000_000


class AlertBeforeTheAdditions(msgspec.Struct, frozen=True, kw_only=True):
    """``Alert`` as older gateways decode it."""

    id: str
    rule: str
    severity: Severity
    state: AlertState
    acked: bool = False
    subject: str
    title: str
    raised: int
    updated: int


def test_new_alert_fields_are_optional_both_ways() -> None:
    plain = Alert(id="al-1", rule="r", severity=Severity.CRITICAL, state=AlertState.ACTIVE,
                  subject="s", title="t", raised=T0, updated=T0)  # fmt: skip
    assert b"shelved_until" not in encode(plain)  # an unchanged payload when unused
    assert b"closed" not in encode(plain)
    assert b"rev" not in encode(plain)
    old_payload = msgspec.json.encode(msgspec.convert(msgspec.to_builtins(plain),
                                                      AlertBeforeTheAdditions))  # fmt: skip
    decoded = MessageDecoder(Alert).decode(old_payload)
    assert (decoded.shelved_until, decoded.closed, decoded.rev) == (None, False, 0)
    full = msgspec.structs.replace(plain, shelved_until=T0 + 1, closed=True, rev=T0 + 2)
    old = msgspec.json.decode(encode(full), type=AlertBeforeTheAdditions)  # older gateway
    assert old.id == "al-1"
    assert MessageDecoder(Alert).decode(encode(full)) == full


def test_the_alert_index_is_validated() -> None:
    index = AlertIndex(gateway="gw-1", rev=T0, ts=T0, alerts={"al-1": T0 - 1})
    assert MessageDecoder(AlertIndex).decode(encode(index)) == index
    with pytest.raises(ContractError):
        MessageDecoder(AlertIndex).decode(b'{"gateway": "gw-1", "rev": -1, "ts": 0}')
    with pytest.raises(ContractError):
        MessageDecoder(AlertIndex).decode(b'{"gateway": "gw 1", "rev": 1, "ts": 0}')


def test_the_index_topic_is_its_own_channel_outside_the_per_alert_topics() -> None:
    scheme = TopicScheme()
    topic = scheme.topic("s1", "gw-1", Channel.ALERT_INDEX)
    assert topic == "flightdeck/v1/s1/gw-1/alert-index"
    address = scheme.parse(topic)
    assert (address.channel, address.alert_id) == (Channel.ALERT_INDEX, None)
    # an older gateway's ``alerts/+`` subscription never receives it
    assert not topic.startswith(scheme.alerts_subscription("s1", "gw-1")[:-1])
