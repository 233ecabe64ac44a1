"""The sending side of the agent: publish what the outbox picks, track message ids.

Alert acknowledgements go first (an operator is waiting for the cloud to know), then
telemetry: each :class:`~edge_agent.delivery.Send` is fetched from the spool and wrapped in an
envelope carrying the current ``first_unacked`` and ``historical`` flag. A refused publish is
handled, never ignored: *queue full* puts the batch back (a PUBACK frees a slot and pumps
again); any other refusal puts it back and retries after :data:`RETRY_S`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

import msgspec

from edge_agent.alerts import PendingAck
from edge_agent.delivery import Send
from edge_agent.errors import PublishError, QueueFullError
from edge_agent.publisher import TelemetryEnvelope
from shared.codec import encode
from shared.topics import Channel

if TYPE_CHECKING:
    from edge_agent.agent import Agent

log = logging.getLogger(__name__)

RETRY_S: Final = 1.0  # after a publish refusal that is not "queue full"


class Sender:
    """Pumps the agent's outbox into its publisher (on the event loop)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._mids: dict[int, Send | PendingAck] = {}
        self._acks_in_flight: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.queue_full = 0
        self.publish_errors = 0

    def pump(self) -> None:
        """Publish what the outbox picks, alert acks first, until it says wait."""
        a = self._agent
        pub = a.publisher
        if pub is None or not a.outbox.connected:
            return
        self.cancel()
        for pending in a.alerts.pending_acks():
            if pending.row in self._acks_in_flight:
                continue
            try:
                mid = pub.publish(Channel.ALERT_ACKS, pending.payload)
            except PublishError as exc:
                self._failed(exc)
                return
            self._mids[mid] = pending
            self._acks_in_flight.add(pending.row)
        now = a.clock.mono_ms()
        outbox = a.outbox
        while (send := outbox.next_send(now)) is not None:
            ordinal = a.store.ordinal_of(send.boot)
            stored = None if ordinal is None else a.store.fetch(ordinal, send.seq)
            if stored is None:  # dropped meanwhile: release the window slot
                outbox.on_puback()
                continue
            envelope = TelemetryEnvelope(
                gateway=a.config.gateway,
                boot=send.boot,
                seq=send.seq,
                first_unacked=send.first_unacked,
                historical=send.historical or stored.historical,
                clock_step_ms=stored.clock_step_ms,
                readings=msgspec.Raw(stored.payload),
            )
            try:
                mid = pub.publish(Channel.TELEMETRY, encode(envelope))
            except PublishError as exc:
                outbox.requeue(send)
                self._failed(exc)
                return
            self._mids[mid] = send
            a.readings_out.add(stored.readings, now)
            if send.historical:
                outbox.charge(stored.readings, now)
        wake = outbox.wake_ms(now)
        if wake is not None:
            self._timer = asyncio.get_running_loop().call_later(
                max(0, wake - now) / 1000, self.pump
            )

    def on_puback(self, mid: int, failure: str | None) -> PendingAck | None:
        """A PUBACK: frees a window slot; returns the alert ack it confirmed, if any."""
        item = self._mids.pop(mid, None)
        if isinstance(item, Send):
            self._agent.outbox.on_puback()
        elif isinstance(item, PendingAck):
            self._acks_in_flight.discard(item.row)
            if failure is None:
                return item
        return None

    def on_connected(self) -> None:
        """Unconfirmed alert acks are sent again on a new connection (duplicates are fine)."""
        self._acks_in_flight.clear()

    def forget_telemetry(self) -> None:
        """The outbox was replaced (a corrupt spool): old message ids mean nothing now."""
        self._mids = {m: s for m, s in self._mids.items() if isinstance(s, PendingAck)}

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _failed(self, exc: PublishError) -> None:
        if isinstance(exc, QueueFullError):
            self.queue_full += 1  # a PUBACK frees a slot and pumps again
            return
        self.publish_errors += 1
        log.error("publish refused, retrying in %.0f s: %s", RETRY_S, exc)
        self._timer = asyncio.get_running_loop().call_later(RETRY_S, self.pump)
