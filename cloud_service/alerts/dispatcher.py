"""The outbox loop: claim due notifications, apply the policy, send through the sinks, settle.

A thin shell around :class:`outbox.OutboxPolicy`. It sleeps until the earliest due
notification or until :meth:`Dispatcher.wake` is called (the service does that after each
enqueue), so a new alert goes out at once and an idle outbox costs nothing. Each channel has
its own ``concurrency`` send slots: a channel whose sends are slow never delays another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cloud_service.alerts.errors import DeliveryError
from cloud_service.alerts.outbox import (
    AlertSink,
    Notification,
    OutboxPolicy,
    OutboxStore,
    Outcome,
    Status,
    Summary,
)

log = logging.getLogger(__name__)

Summariser = Callable[[str, str, Sequence[Notification], int], Notification]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class DispatchReport:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    summaries: int = 0
    deferred: int = 0

    def count(self, status: Status) -> int:
        return self.outcomes.get(status.value, 0)


class Dispatcher:
    def __init__(
        self,
        store: OutboxStore,
        sinks: Mapping[str, AlertSink],
        policy: OutboxPolicy,
        summarise: Summariser,
        *,
        batch: int = 100,
        lease_ms: int = 60_000,
        concurrency: int = 8,
        clock: Callable[[], int] = wall_ms,
        rand: Callable[[], float] = random.random,
        max_idle_s: float = 30.0,
    ) -> None:
        self.store = store
        self.sinks = dict(sinks)
        self.policy = policy
        self.summarise = summarise
        self.batch = batch
        self.lease_ms = lease_ms
        self.clock = clock
        self.rand = rand
        self.max_idle_s = max_idle_s
        self.concurrency = concurrency
        self._slots: dict[str, asyncio.Semaphore] = {}  # per channel
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def _slot(self, channel: str) -> asyncio.Semaphore:
        """Each channel has its own ``concurrency`` send slots, so a slow channel (a broker
        that is down, an SMTP server that hangs) never holds up the others."""
        slots = self._slots.get(channel)
        if slots is None:
            slots = self._slots[channel] = asyncio.Semaphore(self.concurrency)
        return slots

    async def run_once(self, now_ms: int | None = None) -> DispatchReport:
        """One pass over what is due now (tests drive time through ``now_ms``)."""
        now = self.clock() if now_ms is None else now_ms
        report = DispatchReport()
        due = await self.store.claim_due(now, self.batch, self.lease_ms)
        report.claimed = len(due)
        if not due:
            return report
        plan = self.policy.plan(due, now)
        first: list[Outcome] = [
            Outcome(n.id, Status.EXPIRED, n.attempts, n.next_attempt_ms, now, "expired")
            for n in plan.expire
        ]
        first += [Outcome(n.id, Status.PENDING, n.attempts, at, now, n.last_error)
                  for n, at in plan.defer]  # fmt: skip
        summaries = [
            Summary(self.summarise(ch, rcpt, members, now), tuple(m.id for m in members))
            for ch, rcpt, members in plan.summarise
        ]
        if first or summaries:
            await self.store.settle(first, summaries)
        report.deferred, report.summaries = len(plan.defer), len(summaries)
        for n in plan.expire:
            log.warning("alert notification %s to %s:%s expired", n.id, n.channel, n.recipient)
        results = await asyncio.gather(*(self._send(n, now) for n in plan.send))
        await self.store.settle(results)
        for x in (*first, *results):
            report.outcomes[x.status.value] = report.outcomes.get(x.status.value, 0) + 1
        if summaries:
            self.wake()  # the summaries are due now
        return report

    async def _send(self, n: Notification, now: int) -> Outcome:
        sink = self.sinks.get(n.channel)
        try:
            if sink is None:
                raise DeliveryError(
                    f"no sink for channel {n.channel!r}",
                    channel=n.channel, recipient=n.recipient, retryable=False,
                )  # fmt: skip
            async with self._slot(n.channel):
                await sink.send(n)
        except DeliveryError as exc:
            outcome = self.policy.failed(n, exc, now, self.rand())
            log.info("alert notification %s to %s:%s: %s (%s)", n.id, n.channel, n.recipient,
                     exc, outcome.status.value)  # fmt: skip
            return outcome
        except Exception as exc:  # a sink bug must not lose the notification: retry it
            log.exception("alert sink %s failed unexpectedly", n.channel)
            err = DeliveryError(repr(exc), channel=n.channel, recipient=n.recipient, retryable=True)
            return self.policy.failed(n, err, now, self.rand())
        return self.policy.delivered(n, now)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; store failures are logged and retried."""
        while not stop.is_set():
            self._wake.clear()
            try:
                report = await self.run_once()
                if report.claimed >= self.batch:
                    continue
                due = await self.store.next_due_ms()
            except Exception:
                log.exception("alert outbox pass failed; retrying")
                due = self.clock() + 1000
            delay = self.max_idle_s if due is None else max(due - self.clock(), 0) / 1000
            delay = min(delay, self.max_idle_s)
            if delay > 0:
                waits = [asyncio.ensure_future(e.wait()) for e in (stop, self._wake)]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
