"""OPC UA source (asyncua): data-change subscriptions (default) or polling reads of nodes.

* ``subscription``: one subscription per source at ``publishing_interval_ms``; the latest value
  and status of each node is kept as notifications arrive, and a read returns them (seeded by
  one read right after subscribing, so a signal never waits for its first change).
* ``poll``: one Read service call for all the source's nodes per poll.

The connection is ours to manage (asyncua's own auto-reconnect is off): when asyncua's watchdog
or a failed call says the session is gone, every signal reads COMM_FAILURE and the source
reconnects with an exponential backoff, *re-creating the subscription* on the new session.
Node ids are strings: ``ns=2;s=line3.count``, ``ns=2;i=1001``, or ``nsu=URI;s=...`` (the
namespace resolved by URI on every connect, as indices may change between server starts).

Status codes map to qualities: Good -> GOOD, Uncertain -> UNCERTAIN, BadNoCommunication and
kin (the server cannot reach the device) -> COMM_FAILURE, any other Bad -> BAD.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.ua.status_codes import StatusCodes

from edge_agent.backoff import Backoff
from edge_agent.config import OpcUaSourceConfig, SignalConfig
from edge_agent.sources.base import check_signals, failed_readings
from shared.codec import make_reading
from shared.messages import Quality, Reading

log = logging.getLogger(__name__)

_COMM_STATUS: Final = frozenset(
    {
        StatusCodes.BadNoCommunication,
        StatusCodes.BadCommunicationError,
        StatusCodes.BadNotConnected,
        StatusCodes.BadServerNotConnected,
        StatusCodes.BadWaitingForInitialData,
        StatusCodes.BadDeviceFailure,
    }
)


def quality_of(status: ua.StatusCode | None) -> Quality:
    """The contract quality for an OPC UA status code (pure)."""
    if status is None or status.is_good():
        return Quality.GOOD
    if status.is_uncertain():
        return Quality.UNCERTAIN
    return Quality.COMM_FAILURE if status.value in _COMM_STATUS else Quality.BAD


def number_of(value: Any) -> float | None:
    """A finite number from an OPC UA value (bool -> 1/0), else None."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


class _Handler:
    """asyncua subscription callbacks: keep the latest value per node."""

    def __init__(self, source: OpcUaSource) -> None:
        self._source = source

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        dv = data.monitored_item.Value
        self._source.latest[node.nodeid] = (val, dv.StatusCode if dv is not None else None)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        self._source.lost(f"subscription status {status.Status}")


class OpcUaSource:
    """Reads a set of signals from one OPC UA server; see the module docstring."""

    def __init__(
        self,
        config: OpcUaSourceConfig,
        signals: Sequence[SignalConfig],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_signals(config.id, signals, needs="node", what="OPC UA node id")
        self.config = config
        self.signals = tuple(signals)
        self.signal_ids = tuple(s.id for s in signals)
        self.last_error: str | None = None
        self.connects = 0
        self.latest: dict[ua.NodeId, tuple[Any, ua.StatusCode | None]] = {}
        self._monotonic = monotonic
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._client: Client | None = None
        self._subscription: Subscription | None = None
        self._nodes: list[Node] = []
        self._healthy = False

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def connected(self) -> bool:
        client = self._client
        return self._healthy and client is not None and client.state is UaClientState.CONNECTED

    def lost(self, reason: str) -> None:
        """The session is gone (called from asyncua's callbacks or a failed call)."""
        if self._healthy:
            log.warning("opcua source %s: connection lost: %s", self.id, reason)
        self._healthy = False
        self.last_error = reason

    async def read(self, now_ms: int) -> list[Reading]:
        if not self.connected:
            await self._drop_client()
            if not self._backoff.ready(self._monotonic()) or not await self._connect():
                return failed_readings(self.signal_ids, now_ms, Quality.COMM_FAILURE)
        if self.config.mode == "poll":
            try:
                values = await self._client_or_fail().read_attributes(self._nodes)
            except Exception as exc:  # any failure of the call: the session is suspect
                self.lost(f"read failed: {type(exc).__name__}: {exc}")
                return failed_readings(self.signal_ids, now_ms, Quality.COMM_FAILURE)
            for node, dv in zip(self._nodes, values, strict=True):
                self.latest[node.nodeid] = (dv.Value.Value if dv.Value else None, dv.StatusCode)
        return [
            self._reading(s, node, now_ms)
            for s, node in zip(self.signals, self._nodes, strict=True)
        ]

    async def close(self) -> None:
        await self._drop_client()

    # -- internals ----------------------------------------------------------------------

    def _reading(self, s: SignalConfig, node: Node, now_ms: int) -> Reading:
        value, status = self.latest.get(node.nodeid, (None, None))
        quality = quality_of(status)
        number = number_of(value)
        if quality is Quality.GOOD and number is None:
            quality = Quality.BAD  # not a number, or nothing received yet
        if number is None or quality in (Quality.BAD, Quality.COMM_FAILURE):
            return make_reading(s.id, now_ms, None, quality)
        return make_reading(s.id, now_ms, number * s.scale + s.offset, quality)

    def _client_or_fail(self) -> Client:
        assert self._client is not None
        return self._client

    async def _connect(self) -> bool:
        cfg = self.config
        client = Client(cfg.url, timeout=cfg.timeout_s, watchdog_intervall=cfg.timeout_s)
        if cfg.username is not None:
            client.set_user(cfg.username)
        if cfg.password is not None:
            client.set_password(cfg.password.get_secret_value())
        client.connection_lost_callback = self._on_lost
        try:
            await client.connect(auto_reconnect=False)
        except Exception as exc:
            self._failed(f"connect to {cfg.url}: {type(exc).__name__}: {exc}")
            return False
        self._client = client
        try:
            self._nodes = [client.get_node(await self._node_id(client, s)) for s in self.signals]
            self.latest.clear()
            if cfg.mode == "subscription":
                sub = await client.create_subscription(cfg.publishing_interval_ms, _Handler(self))
                self._subscription = sub
                values = await client.read_attributes(self._nodes)
                for node, dv in zip(self._nodes, values, strict=True):
                    self.latest[node.nodeid] = (dv.Value.Value if dv.Value else None, dv.StatusCode)
                await sub.subscribe_data_change(self._nodes)
        except Exception as exc:
            self._failed(f"subscribe on {cfg.url}: {type(exc).__name__}: {exc}")
            await self._drop_client()
            return False
        self._healthy = True
        self.connects += 1
        self._backoff.succeeded()
        log.info("opcua source %s: connected to %s (%s)", self.id, cfg.url, cfg.mode)
        return True

    async def _on_lost(self, exc: Exception) -> None:
        self.lost(f"{type(exc).__name__}: {exc}")

    @staticmethod
    async def _node_id(client: Client, s: SignalConfig) -> ua.NodeId:
        assert s.node is not None
        parsed = ua.NodeId.from_string(s.node)
        uri = getattr(parsed, "NamespaceUri", None)
        if uri:
            index = await client.get_namespace_index(uri)
            return ua.NodeId(parsed.Identifier, ua.Int16(index), parsed.NodeIdType)
        return parsed

    def _failed(self, error: str) -> None:
        if self.last_error != error:
            log.warning("opcua source %s: %s", self.id, error)
        self.last_error = error
        self._backoff.failed(self._monotonic())

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._subscription = None
        self._healthy = False
        if client is not None:
            try:
                await client.disconnect()
            except Exception as exc:  # the server is gone anyway
                log.debug("opcua source %s: disconnect: %s", self.id, exc)
