"""Pure delivery state machine: which spooled batch to publish next, and when to resend.

The spool (SQLite) holds the batches; this module holds only numbers about them, per
*stream* (one gateway boot): ``lo`` (every seq below is gone: acked or dropped, so ``lo`` is
the batch's ``first_unacked``), ``top`` (highest seq that exists), the cloud's ``acked`` seq,
the seqs already handed to the transport (a :class:`RangeSet`, a few intervals), and which
batches of the current boot are still open (collecting readings; never sent).

Priorities: live batches first (closed while connected; sent once, ``historical=False``),
then the backlog (everything else: batches closed while offline, older boots after a restart,
resends), oldest boot first, in seq order, under a token bucket in readings per second, so a
gateway back from an outage does not flood the broker. At most ``window`` batches are in the
transport without a PUBACK.

Resends: a broker PUBACK does not mean stored. paho retransmits what it has not had PUBACKed,
but a broker crash loses what it had PUBACKed and not yet delivered, so when the cloud is seen
alive (a *fresh* ack arrives, for any stream) while a stream's ack has not moved for
``resend_after`` since it sent something, the stream is rewound: everything un-acked is sent
again (flagged historical). The wait doubles per rewind up to ``resend_max`` and resets when
the ack moves. While the cloud is down no fresh ack arrives, so nothing is resent into the
broker's queue for it. Duplicates are harmless: points are keyed by device timestamp.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field


class RangeSet:
    """A set of positive ints stored as sorted disjoint closed intervals."""

    __slots__ = ("_his", "_los")

    def __init__(self) -> None:
        self._los: list[int] = []
        self._his: list[int] = []

    def __contains__(self, x: int) -> bool:
        i = bisect.bisect_right(self._los, x) - 1
        return i >= 0 and x <= self._his[i]

    def __len__(self) -> int:
        return sum(h - lo + 1 for lo, h in zip(self._los, self._his, strict=True))

    def intervals(self) -> list[tuple[int, int]]:
        return list(zip(self._los, self._his, strict=True))

    def add(self, x: int) -> None:
        i = bisect.bisect_right(self._los, x) - 1
        if i >= 0 and x <= self._his[i]:
            return
        joins_left = i >= 0 and self._his[i] == x - 1
        joins_right = i + 1 < len(self._los) and self._los[i + 1] == x + 1
        if joins_left and joins_right:
            self._his[i] = self._his[i + 1]
            del self._los[i + 1], self._his[i + 1]
        elif joins_left:
            self._his[i] = x
        elif joins_right:
            self._los[i + 1] = x
        else:
            self._los.insert(i + 1, x)
            self._his.insert(i + 1, x)

    def first(self) -> int | None:
        return self._los[0] if self._los else None

    def discard(self, x: int) -> None:
        i = bisect.bisect_right(self._los, x) - 1
        if i < 0 or x > self._his[i]:
            return
        lo, hi = self._los[i], self._his[i]
        if lo == hi:
            del self._los[i], self._his[i]
        elif x == lo:
            self._los[i] = x + 1
        elif x == hi:
            self._his[i] = x - 1
        else:
            self._his[i] = x - 1
            self._los.insert(i + 1, x + 1)
            self._his.insert(i + 1, hi)

    def discard_upto(self, x: int) -> None:
        """Remove every member <= ``x``."""
        while self._los and self._his[0] <= x:
            del self._los[0], self._his[0]
        if self._los and self._los[0] <= x:
            self._los[0] = x + 1

    def next_missing(self, x: int) -> int:
        """The smallest int >= ``x`` that is not a member."""
        i = bisect.bisect_right(self._los, x) - 1
        if i >= 0 and x <= self._his[i]:
            return self._his[i] + 1
        return x

    def clear(self) -> None:
        self._los.clear()
        self._his.clear()


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; may go into debt (charged after the fact)."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate and burst must be > 0")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._at: int | None = None

    def _refill(self, now_ms: int) -> None:
        if self._at is not None and now_ms > self._at:
            self._tokens = min(
                self.burst, self._tokens + (now_ms - self._at) * self.rate_per_s / 1000
            )
        if self._at is None or now_ms > self._at:
            self._at = now_ms

    def available(self, now_ms: int) -> float:
        self._refill(now_ms)
        return self._tokens

    def take(self, n: float, now_ms: int) -> None:
        self._refill(now_ms)
        self._tokens -= n

    def wait_ms(self, now_ms: int) -> int:
        """How long until the bucket holds a token again (0: it does)."""
        tokens = self.available(now_ms)
        if tokens > 0:
            return 0
        return int((1 - tokens) * 1000 / self.rate_per_s) + 1


@dataclass(frozen=True, slots=True)
class Send:
    """Publish batch ``seq`` of ``boot`` now, with these envelope fields."""

    boot: str
    seq: int
    historical: bool
    first_unacked: int


@dataclass(slots=True)
class Stream:
    """Delivery state of one boot's batches (see the module docstring)."""

    boot: str
    lo: int = 1
    top: int = 0
    acked: int = 0
    sent: RangeSet = field(default_factory=RangeSet)
    open: set[int] = field(default_factory=set)
    waiting_since: int | None = None  # first send not yet covered by an ack (mono ms)
    resend_after_ms: int = 0

    @property
    def empty(self) -> bool:
        return self.lo > self.top and not self.open

    def first_candidate(self, skip: set[int]) -> int | None:
        seq = self.sent.next_missing(max(self.lo, self.acked + 1))
        while seq <= self.top:
            if seq not in self.open and seq not in skip:
                return seq
            seq = self.sent.next_missing(seq + 1)
        return None


@dataclass(slots=True)
class OutboxStats:
    live_sent: int = 0
    backlog_sent: int = 0
    rewinds: int = 0
    requeued: int = 0


class Outbox:
    """Decides the next :class:`Send`; told about commits, acks, PUBACKs and the connection."""

    def __init__(
        self,
        *,
        current_boot: str,
        window: int,
        bucket: TokenBucket,
        live_queue_max: int = 200,
        resend_after_ms: int = 30_000,
        resend_max_ms: int = 900_000,
    ) -> None:
        self.current_boot = current_boot
        self.window = window
        self.bucket = bucket
        self.live_queue_max = live_queue_max
        self.resend_after_ms = resend_after_ms
        self.resend_max_ms = resend_max_ms
        self.stats = OutboxStats()
        self.connected = False
        self.inflight = 0  # handed to the transport, no PUBACK yet
        self.cloud_seen_ms: int | None = None  # when the last fresh ack arrived
        self._streams: dict[str, Stream] = {}
        self._live: deque[int] = deque()
        self._live_set: set[int] = set()
        self.add_stream(current_boot, lo=1, top=0)

    # -- what exists --------------------------------------------------------------------

    def add_stream(self, boot: str, *, lo: int, top: int) -> Stream:
        """A boot's batches found in the spool (at start: older boots go first, add them so)."""
        stream = Stream(boot, lo=lo, top=top, acked=lo - 1, resend_after_ms=self.resend_after_ms)
        self._streams[boot] = stream
        if boot != self.current_boot and self.current_boot in self._streams:
            # The current boot's backlog goes after every older boot's.
            self._streams[self.current_boot] = self._streams.pop(self.current_boot)
        return stream

    def stream(self, boot: str) -> Stream | None:
        return self._streams.get(boot)

    def streams(self) -> list[Stream]:
        return list(self._streams.values())

    def opened(self, seq: int) -> None:
        """A batch of the current boot opened: durable already, not sendable until closed."""
        s = self._streams[self.current_boot]
        s.open.add(seq)
        s.top = max(s.top, seq)

    def committed(self, seq: int, *, historical: bool = False) -> None:
        """A batch of the current boot closed and is durable: send it live if we can. A
        ``historical`` batch (a CSV back-fill) goes with the backlog, under the rate limit."""
        s = self._streams[self.current_boot]
        s.open.discard(seq)
        s.top = max(s.top, seq)
        if historical or not self.connected or seq < s.lo or seq in s.sent:
            return
        self._live.append(seq)
        self._live_set.add(seq)
        while len(self._live) > self.live_queue_max:  # too far behind: these turn backlog
            self._live_set.discard(self._live.popleft())

    def dropped(self, boot: str, upto: int) -> None:
        """The spool policy deleted every batch of ``boot`` up to ``upto``."""
        s = self._streams.get(boot)
        if s is None:
            return
        s.lo = max(s.lo, upto + 1)
        s.sent.discard_upto(upto)
        s.open = {seq for seq in s.open if seq > upto}
        if boot == self.current_boot:
            self._forget_live(upto)

    def retire_empty(self) -> list[str]:
        """Forget old boots with nothing left in the spool; returns their ids."""
        gone = [b for b, s in self._streams.items() if b != self.current_boot and s.empty]
        for boot in gone:
            del self._streams[boot]
        return gone

    # -- transport events ---------------------------------------------------------------

    def on_connect(self) -> None:
        self.connected = True

    def on_disconnect(self) -> None:
        """Live batches not yet handed over become backlog (they will be flagged historical)."""
        self.connected = False
        self._live.clear()
        self._live_set.clear()

    def on_puback(self) -> None:
        self.inflight = max(0, self.inflight - 1)

    def on_ack(self, boot: str, seq: int, *, fresh: bool, now_ms: int) -> int | None:
        """The cloud stored every batch of ``boot`` up to ``seq``; returns the seq up to which
        the spool may now delete (None: nothing new). ``fresh``: not a retained replay."""
        if fresh:
            self.cloud_seen_ms = now_ms
        s = self._streams.get(boot)
        result: int | None = None
        if s is not None and seq > s.acked:
            s.acked = min(seq, s.top)
            s.sent.discard_upto(s.acked)
            if boot == self.current_boot:
                self._forget_live(s.acked)
            s.resend_after_ms = self.resend_after_ms
            s.waiting_since = now_ms if len(s.sent) else None
            if s.acked >= s.lo:
                result = s.acked
                s.lo = s.acked + 1
        if fresh:
            self._rewind_stalled(now_ms)
        return result

    def requeue(self, send: Send) -> None:
        """The transport refused ``send`` (queue full): it was not sent after all."""
        self.stats.requeued += 1
        s = self._streams.get(send.boot)
        if s is None:
            return
        s.sent.discard(send.seq)
        self.inflight = max(0, self.inflight - 1)
        if not send.historical and send.boot == self.current_boot and self.connected:
            self._live.appendleft(send.seq)
            self._live_set.add(send.seq)

    # -- deciding -----------------------------------------------------------------------

    def next_send(self, now_ms: int) -> Send | None:
        """The next batch to publish now, or None (disconnected, window full, rate limit)."""
        if not self.connected or self.inflight >= self.window:
            return None
        current = self._streams[self.current_boot]
        while self._live:
            seq = self._live.popleft()
            self._live_set.discard(seq)
            if seq >= current.lo and seq not in current.sent:
                self.stats.live_sent += 1
                return self._mark(current, seq, historical=False, now_ms=now_ms)
        if self.bucket.available(now_ms) <= 0:
            return None
        for s in self._streams.values():
            candidate = s.first_candidate(self._live_set if s is current else set())
            if candidate is not None:
                self.stats.backlog_sent += 1
                return self._mark(s, candidate, historical=True, now_ms=now_ms)
        return None

    def charge(self, readings: int, now_ms: int) -> None:
        """Charge a backlog send's readings to the rate limit (known once it was fetched)."""
        self.bucket.take(readings, now_ms)

    def in_flight_floor(self, now_ms: int) -> dict[str, int]:
        """Per stream, the lowest seq sent less than ``resend_after`` ago and not yet acked.

        The spool policy drops nothing from there on: such a batch is on its way (its ack is
        due), and dropping it would count as lost a reading that is about to be stored.
        """
        floors: dict[str, int] = {}
        for s in self._streams.values():
            first = s.sent.first()
            if (
                first is not None
                and s.waiting_since is not None
                and now_ms - s.waiting_since < s.resend_after_ms
            ):
                floors[s.boot] = first
        return floors

    def all_acked(self) -> bool:
        """Whether the cloud acked every batch that exists (nothing left to wait for)."""
        return all(s.acked >= s.top and not s.open for s in self._streams.values())

    def has_backlog(self) -> bool:
        current = self._streams[self.current_boot]
        return any(
            s.first_candidate(self._live_set if s is current else set()) is not None
            for s in self._streams.values()
        )

    def wake_ms(self, now_ms: int) -> int | None:
        """When :meth:`next_send` may have something again because of the rate limit."""
        if not self.connected or self.inflight >= self.window or self._live:
            return None
        if self.bucket.available(now_ms) > 0 or not self.has_backlog():
            return None
        return now_ms + self.bucket.wait_ms(now_ms)

    # -- internals ----------------------------------------------------------------------

    def _mark(self, s: Stream, seq: int, *, historical: bool, now_ms: int) -> Send:
        s.sent.add(seq)
        self.inflight += 1
        if s.waiting_since is None:
            s.waiting_since = now_ms
        return Send(s.boot, seq, historical, s.lo)

    def _forget_live(self, upto: int) -> None:
        if any(seq <= upto for seq in self._live):
            self._live = deque(seq for seq in self._live if seq > upto)
            self._live_set = set(self._live)

    def _rewind_stalled(self, now_ms: int) -> None:
        for s in self._streams.values():
            if s.waiting_since is not None and now_ms - s.waiting_since >= s.resend_after_ms:
                s.sent.clear()
                s.waiting_since = None
                s.resend_after_ms = min(2 * s.resend_after_ms, self.resend_max_ms)
                self.stats.rewinds += 1
                if s.boot == self.current_boot:
                    self._live.clear()
                    self._live_set.clear()
