"""Which MQTT version to send in the next CONNECT: MQTT 5, falling back to 3.1.1 (pure).

``broker.protocol = "auto"`` (the default) starts with MQTT 5 and falls back to 3.1.1 for the
rest of the agent's run when the broker shows it does not speak 5:

* it answers the v5 CONNECT with CONNACK reason 0x84 *Unsupported Protocol Version*, or with
  the 3.1.1 return code 1 *unacceptable protocol version* (a 3.1.1 broker's answer; paho reports
  both as 0x84); or
* it closes the connection after the v5 CONNECT without any CONNACK (what some 3.1.1 brokers
  do with a protocol level they do not know), :data:`SILENT_CLOSES` times in a row, so that one
  connection lost to the network during a connect does not downgrade a v5 broker.

Once a v5 connection has succeeded the version is settled: a later refusal is not about the
version. A pinned ``"5"`` or ``"3.1.1"`` never changes. No I/O here: the publisher feeds the
events in (from paho's thread) and reads :attr:`VersionChoice.version` before each connect.
"""

from __future__ import annotations

from typing import Final, Literal

V5: Final = "5"
V311: Final = "3.1.1"
#: MQTT 5 CONNACK reason code "Unsupported Protocol Version".
UNSUPPORTED_PROTOCOL_VERSION: Final = 0x84
#: MQTT 3.1.1 CONNACK return code "Connection Refused, unacceptable protocol version".
V311_UNACCEPTABLE_PROTOCOL_VERSION: Final = 1
#: Connections closed before any CONNACK, in a row, that make "auto" fall back.
SILENT_CLOSES: Final = 2

MqttVersion = Literal["5", "3.1.1"]


class VersionChoice:
    """The MQTT version of the next CONNECT, and why (see the module docstring)."""

    def __init__(
        self, setting: Literal["auto", "5", "3.1.1"], *, silent_closes: int = SILENT_CLOSES
    ) -> None:
        self.setting = setting
        self.version: MqttVersion = V311 if setting == V311 else V5
        self.silent_closes = silent_closes
        self.settled = setting != "auto"  # pinned, or a v5 connect already succeeded
        self.fell_back_because: str | None = None
        self._closes = 0

    @property
    def describe(self) -> str:
        """For logs and status: ``"5 (auto)"``, ``"3.1.1 (auto: fell back, ...)"``..."""
        if self.setting != "auto":
            return f"{self.version} (pinned)"
        if self.fell_back_because is not None:
            return f"{self.version} (auto: fell back from 5, {self.fell_back_because})"
        return f"{self.version} (auto{'' if self.settled else ', not yet confirmed'})"

    def connected(self) -> None:
        """The broker accepted a CONNECT with :attr:`version`."""
        self.settled = True
        self._closes = 0

    def refused(self, reason_code: int) -> bool:
        """The broker answered the CONNECT with a failure; True if the version changed."""
        self._closes = 0
        if self.settled or self.version != V5:
            return False
        if reason_code in (UNSUPPORTED_PROTOCOL_VERSION, V311_UNACCEPTABLE_PROTOCOL_VERSION):
            return self._fall_back(f"the broker refused it (CONNACK 0x{reason_code:02x})")
        return False

    def closed_without_connack(self) -> bool:
        """The connection closed after the CONNECT, before any CONNACK; True if it changed."""
        if self.settled or self.version != V5:
            return False
        self._closes += 1
        if self._closes < self.silent_closes:
            return False
        return self._fall_back(
            f"the broker closed {self._closes} connection(s) on the v5 CONNECT without a CONNACK"
        )

    def _fall_back(self, because: str) -> bool:
        self.version = V311
        self.fell_back_because = because
        self._closes = 0
        return True
