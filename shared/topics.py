"""MQTT topic tree: ``{prefix}/{site}/{gateway}/{channel}``, plus one retained sub-topic per
alert, ``{prefix}/{site}/{gateway}/alerts/{alert_id}``: a broker keeps one retained message per
topic, so a topic per alert is what lets a reconnecting gateway receive the whole active set.
``alert-index`` (retained) lists the open alerts' ids, so a gateway also learns which alerts
closed while it was away (a deleted retained message is simply not delivered).

Building and parsing live in one place so ACL patterns, the edge and the cloud cannot drift
apart. Ids are checked on both paths: a topic built here can never contain a wildcard, and a
topic parsed here is refused unless every level is a valid id and the channel is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from shared.errors import ContractError, Reason
from shared.ids import check_id, is_valid_id

DEFAULT_PREFIX: Final = "flightdeck/v1"


class Channel(StrEnum):
    TELEMETRY = "telemetry"  # edge -> cloud, QoS 1
    BIRTH = "birth"  # edge -> cloud, retained
    STATE = "state"  # edge -> cloud, retained; offline is the will
    ACK = "ack"  # cloud -> edge: highest contiguous seq durably stored
    ALERTS = "alerts"  # cloud -> edge
    ALERT_INDEX = "alert-index"  # cloud -> edge, retained: the open alerts' ids
    ALERT_ACKS = "alert-acks"  # edge -> cloud
    CMD = "cmd"  # cloud -> edge


#: Who publishes on each channel; the other side subscribes.
EDGE_TO_CLOUD: Final = frozenset(
    {Channel.TELEMETRY, Channel.BIRTH, Channel.STATE, Channel.ALERT_ACKS}
)
CLOUD_TO_EDGE: Final = frozenset({Channel.ACK, Channel.ALERTS, Channel.ALERT_INDEX, Channel.CMD})
RETAINED: Final = frozenset({Channel.BIRTH, Channel.STATE})


@dataclass(frozen=True, slots=True)
class TopicAddress:
    site: str
    gateway: str
    channel: Channel
    alert_id: str | None = None  # only on ``alerts/{alert_id}``


@dataclass(frozen=True, slots=True)
class TopicScheme:
    """The topic tree under one prefix (itself a ``/``-separated list of ids)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        for level in self.prefix.split("/"):
            check_id(level, "topic prefix level")

    def topic(self, site: str, gateway: str, channel: Channel) -> str:
        check_id(site, "site")
        check_id(gateway, "gateway")
        return f"{self.prefix}/{site}/{gateway}/{Channel(channel).value}"

    def alert_topic(self, site: str, gateway: str, alert_id: str) -> str:
        """The retained topic of one alert (an empty retained payload removes it)."""
        return f"{self.topic(site, gateway, Channel.ALERTS)}/{check_id(alert_id, 'alert')}"

    def alerts_subscription(self, site: str, gateway: str) -> str:
        """What a gateway subscribes to for its alerts: every per-alert topic."""
        return f"{self.topic(site, gateway, Channel.ALERTS)}/+"

    def subscription(
        self, channel: Channel, *, site: str | None = None, gateway: str | None = None
    ) -> str:
        """A filter for one channel; ``None`` levels become ``+`` wildcards."""
        site_level = "+" if site is None else check_id(site, "site")
        gateway_level = "+" if gateway is None else check_id(gateway, "gateway")
        return f"{self.prefix}/{site_level}/{gateway_level}/{Channel(channel).value}"

    def shared_subscription(self, group: str, channel: Channel) -> str:
        """MQTT 5 shared subscription so N cloud workers split one channel's load."""
        check_id(group, "share group")
        return f"$share/{group}/{self.subscription(channel)}"

    def parse(self, topic: str) -> TopicAddress:
        """Parse and validate an incoming topic, or raise ``ContractError(BAD_TOPIC)``."""
        head, sep, rest = topic.partition(self.prefix + "/")
        if head or not sep:
            raise ContractError(Reason.BAD_TOPIC, f"topic {topic!r} is not under {self.prefix!r}")
        levels = rest.split("/")
        alert_id = None
        if len(levels) == 4 and levels[2] == Channel.ALERTS.value:
            alert_id = levels.pop()
            if not is_valid_id(alert_id):
                raise ContractError(Reason.BAD_TOPIC, f"topic {topic!r} has an invalid alert id")
        if len(levels) != 3:
            raise ContractError(
                Reason.BAD_TOPIC, f"topic {topic!r} is not prefix/site/gateway/channel"
            )
        site, gateway, channel = levels
        if not (is_valid_id(site) and is_valid_id(gateway)):
            raise ContractError(Reason.BAD_TOPIC, f"topic {topic!r} has an invalid site or gateway")
        try:
            return TopicAddress(site, gateway, Channel(channel), alert_id)
        except ValueError:
            raise ContractError(Reason.BAD_TOPIC, f"unknown channel {channel!r}") from None
