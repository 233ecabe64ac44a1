"""Pure signal processing between a source and the batcher: counters, report by exception,
timestamps that never go backwards, and wall-clock checks. No I/O (a log line aside) and no
clock of its own.

Order per reading: (0) a timestamp outside the range the wire contract accepts (1677..2262:
a sentinel date in a CSV export, a clock gone mad) is refused, counted and logged, as no
timestamp can be made up for it; (1) a clock that was evidently never set makes a GOOD reading
UNCERTAIN; (2) a counter signal's device value becomes a running total (rollover, reset and
implausible jumps handled); (3) report by exception decides whether the reading is published;
(4) a live reading's timestamp is forced above the signal's previous one, because InfluxDB
*overwrites* a point with the same timestamp: after a small backwards clock step a reading
would otherwise silently replace an older one. A reading further back than
:data:`TS_BUMP_MAX_MS` is a clock jump (a Pi has no RTC; a bogus NTP answer may be corrected):
it keeps its own timestamp, which becomes the signal's floor, and is UNCERTAIN, so one glitch
forward cannot stamp every later reading in the future. Back-fill signals keep their file's
timestamps untouched (history, in any order; a duplicate is idempotent at InfluxDB).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec

from edge_agent.config import AgentConfig, SignalConfig
from shared.messages import EpochMs, Quality, Reading

log = logging.getLogger(__name__)

DEFAULT_CLOCK_STEP_THRESHOLD_MS: Final = 1000
#: A live reading at most this far behind its signal's previous timestamp is moved just above
#: it (a small clock step back); further back it is a clock jump and keeps its own timestamp.
#: A restart floor further than this ahead of the wall clock is ignored.
TS_BUMP_MAX_MS: Final = 10_000


def _epoch_ms_range() -> tuple[int, int]:
    """The bounds of :data:`shared.messages.EpochMs`, read from the type itself."""
    info = msgspec.inspect.type_info(EpochMs)
    if not isinstance(info, msgspec.inspect.IntType) or info.ge is None or info.le is None:
        raise TypeError(f"EpochMs is not a bounded int: {info!r}")  # pragma: no cover
    return info.ge, info.le


#: The timestamps the wire contract accepts (what InfluxDB can store: 1677-09-21..2262-04-11).
TS_MIN_MS, TS_MAX_MS = _epoch_ms_range()


def ts_in_contract(ts_ms: int) -> bool:
    """Whether ``ts_ms`` is a timestamp the wire contract (and so the spool) accepts."""
    return TS_MIN_MS <= ts_ms <= TS_MAX_MS


@dataclass(frozen=True, slots=True)
class SignalRules:
    """What processing does with one signal (from its :class:`SignalConfig`)."""

    deadband: float = 0.0
    deadband_percent: float = 0.0
    heartbeat_ms: int = 60_000
    counter_modulus: float | None = None  # 2**bits x |scale|, in engineering units
    counter_max_step: float | None = None
    counter_zero: float = 0.0  # the engineering value of a raw 0 (the signal's offset)
    backfill: bool = False  # old timestamps on purpose (CSV back-fill): no restart floor

    @classmethod
    def from_signal(cls, s: SignalConfig, *, backfill: bool = False) -> SignalRules:
        modulus = None if s.counter_bits is None else float(2**s.counter_bits) * abs(s.scale)
        return cls(
            deadband=s.deadband,
            deadband_percent=s.deadband_percent,
            heartbeat_ms=max(1, round(s.heartbeat_s * 1000)),
            counter_modulus=modulus,
            counter_max_step=s.counter_max_step,
            counter_zero=s.offset,
            backfill=backfill,
        )

    @property
    def filters(self) -> bool:
        return self.deadband > 0 or self.deadband_percent > 0


@dataclass(slots=True)
class ReportByException:
    """Publish a value only when it moved past the deadband, its quality changed, or the
    heartbeat interval passed since the last report (monotonic ms)."""

    rules: SignalRules
    last_value: float | None = None
    last_quality: Quality | None = None
    last_report_ms: int | None = None

    def offer(self, value: float | None, quality: Quality, mono_ms: int) -> bool:
        report = (
            not self.rules.filters
            or self.last_report_ms is None
            or quality != self.last_quality
            or mono_ms - self.last_report_ms >= self.rules.heartbeat_ms
            or self._moved(value)
        )
        if report:
            self.last_value, self.last_quality, self.last_report_ms = value, quality, mono_ms
        return report

    def _moved(self, value: float | None) -> bool:
        last = self.last_value
        if value is None or last is None:
            return value != last
        change = abs(value - last)
        r = self.rules
        if r.deadband > 0 and change > r.deadband:
            return True
        return r.deadband_percent > 0 and change > abs(last) * r.deadband_percent / 100


class CounterEvent:
    NONE: Final = "none"
    ROLLOVER: Final = "rollover"
    RESET: Final = "reset"
    JUMP: Final = "jump"  # an implausible change: not counted, the baseline moves


@dataclass(slots=True)
class CounterState:
    """A device counter turned into a running total that never decreases or leaps.

    ``prev`` is the last device value seen, ``total`` what is published. A decrease is a
    rollover when wrapping explains it within ``max_step``, else a device reset (counting
    again from zero: the value itself is the count since the reset). Any change beyond
    ``max_step`` (default: half the modulus) is a glitch: not counted, reported UNCERTAIN.
    """

    modulus: float
    max_step: float | None = None
    zero: float = 0.0
    prev: float | None = None
    total: float | None = None

    def update(self, value: float) -> tuple[float, str]:
        if self.prev is None or self.total is None:
            self.prev = value
            self.total = value - self.zero
            return self.total, CounterEvent.NONE
        step = self.max_step if self.max_step is not None else self.modulus / 2
        delta = value - self.prev
        event: str = CounterEvent.NONE
        if delta < 0:
            wrapped = delta + self.modulus
            if 0 <= wrapped <= step:
                delta, event = wrapped, CounterEvent.ROLLOVER
            else:
                delta, event = value - self.zero, CounterEvent.RESET
        if not 0 <= delta <= step:
            delta, event = 0.0, CounterEvent.JUMP
        self.prev = value
        self.total += delta
        return self.total, event


class ClockWatch:
    """Detects steps of the wall clock against the monotonic clock."""

    def __init__(self, threshold_ms: int = DEFAULT_CLOCK_STEP_THRESHOLD_MS) -> None:
        self.threshold_ms = threshold_ms
        self._offset: int | None = None

    def observe(self, wall_ms: int, mono_ms: int) -> int:
        """The step since the last observation (signed ms), or 0 if below the threshold."""
        offset = wall_ms - mono_ms
        previous, self._offset = self._offset, offset
        if previous is None:
            return 0
        step = offset - previous
        return step if abs(step) >= self.threshold_ms else 0


@dataclass(slots=True)
class ProcessingStats:
    suppressed: int = 0  # readings withheld by report by exception
    uncertain_clock: int = 0  # readings stamped by a clock that was never set
    ts_bumped: int = 0  # readings moved forward to keep timestamps increasing
    ts_jumped_back: int = 0  # readings far behind their signal's floor: kept as stamped
    ts_invalid: int = 0  # readings refused: timestamp outside the contract's range
    counter_events: dict[str, int] = field(default_factory=dict)


class SignalProcessor:
    """Processing state for every signal; :meth:`reconfigure` keeps unchanged signals' state."""

    def __init__(self, rules: Mapping[str, SignalRules], *, min_valid_ms: int = 0) -> None:
        self.min_valid_ms = min_valid_ms
        self.stats = ProcessingStats()
        self._rules: dict[str, SignalRules] = {}
        self._rbe: dict[str, ReportByException] = {}
        self._counters: dict[str, CounterState] = {}
        self._last_ts: dict[str, int] = {}  # live signals' floors
        self._ts_floor = 0  # the highest live ts published before a restart (unseen signals)
        self._invalid_logged: set[str] = set()
        self._max_ts = 0  # the newest live signals' ts (to persist as the next floor)
        self._dirty_counters: set[str] = set()
        self.reconfigure(rules)

    def reconfigure(self, rules: Mapping[str, SignalRules]) -> None:
        old = self._rules
        self._rules = dict(rules)
        for signal, r in self._rules.items():
            if old.get(signal) == r:
                continue
            self._rbe[signal] = ReportByException(r)
            if r.backfill:
                self._last_ts.pop(signal, None)
            if r.counter_modulus is None:
                self._counters.pop(signal, None)
            else:
                previous = self._counters.get(signal)
                state = CounterState(r.counter_modulus, r.counter_max_step, r.counter_zero)
                if previous is not None:  # a new max_step must not restart the total
                    state.prev, state.total = previous.prev, previous.total
                self._counters[signal] = state
        for gone in set(old) - set(self._rules):
            self._rbe.pop(gone, None)
            self._counters.pop(gone, None)
            self._last_ts.pop(gone, None)

    def restore(
        self,
        counters: Mapping[str, tuple[float, float]],
        ts_floor_ms: int,
        *,
        now_ms: int | None = None,
    ) -> None:
        """State saved before a restart: counters' (prev, total), the highest ts published.

        A floor more than :data:`TS_BUMP_MAX_MS` ahead of the wall clock ``now_ms`` (when
        given), or outside the contract's range, is ignored: a clock glitch persisted it.
        """
        for signal, (prev, total) in counters.items():
            state = self._counters.get(signal)
            if state is not None:
                state.prev, state.total = prev, total
        if not ts_in_contract(ts_floor_ms):
            return
        if now_ms is not None and ts_floor_ms - now_ms > TS_BUMP_MAX_MS:
            log.warning(
                "ignoring the saved timestamp floor %d ms: %d ms ahead of the wall clock",
                ts_floor_ms,
                ts_floor_ms - now_ms,
            )
            return
        self._ts_floor = max(self._ts_floor, ts_floor_ms)
        self._max_ts = max(self._max_ts, ts_floor_ms)

    def take_dirty_counters(self) -> dict[str, tuple[float, float]]:
        """Counters changed since the last call, to persist with the readings they produced."""
        out: dict[str, tuple[float, float]] = {}
        for signal in self._dirty_counters:
            state = self._counters.get(signal)
            if state is not None and state.prev is not None and state.total is not None:
                out[signal] = (state.prev, state.total)
        self._dirty_counters.clear()
        return out

    @property
    def max_ts_ms(self) -> int:
        """The newest timestamp of the live signals (0: none), to persist as the next start's
        floor; it comes down when a clock jump back is accepted on every signal holding it."""
        return self._max_ts

    def process(self, readings: Iterable[Reading], mono_ms: int) -> list[Reading]:
        out: list[Reading] = []
        for r in readings:
            value, quality, ts = r.value, r.quality, r.ts
            if not ts_in_contract(ts):
                self._refuse(r)
                continue
            if quality == Quality.GOOD and ts < self.min_valid_ms:
                quality = Quality.UNCERTAIN
                self.stats.uncertain_clock += 1
            counter = self._counters.get(r.signal)
            if counter is not None and value is not None:
                value, event = counter.update(value)
                self._dirty_counters.add(r.signal)
                if event != CounterEvent.NONE:
                    events = self.stats.counter_events
                    events[event] = events.get(event, 0) + 1
                if event in (CounterEvent.JUMP, CounterEvent.RESET) and quality == Quality.GOOD:
                    quality = Quality.UNCERTAIN
            rbe = self._rbe.get(r.signal)
            if rbe is not None and not rbe.offer(value, quality, mono_ms):
                self.stats.suppressed += 1
                continue
            if rbe is None or not rbe.rules.backfill:
                ts, moved = self._live_ts(r.signal, ts)
                if moved and quality == Quality.GOOD:
                    quality = Quality.UNCERTAIN
            if value is r.value and quality == r.quality and ts == r.ts:
                out.append(r)
            else:
                out.append(Reading(r.signal, ts, value, quality))
        return out

    def _live_ts(self, signal: str, ts: int) -> tuple[int, bool]:
        """A live reading's timestamp against its signal's floor; True when it is suspect."""
        floor = self._last_ts.get(signal, self._ts_floor)
        suspect = False
        if ts <= floor:
            suspect = True
            if floor - ts <= TS_BUMP_MAX_MS and floor < TS_MAX_MS:
                ts = floor + 1  # a small step back: stay above, never overwrite a point
                self.stats.ts_bumped += 1
            else:  # a clock jump: the reading's own time becomes the floor
                self.stats.ts_jumped_back += 1
        self._last_ts[signal] = ts
        if ts > self._max_ts:
            self._max_ts = ts
        elif suspect and floor >= self._max_ts:  # this signal held the maximum
            self._max_ts = max(self._last_ts.values())
        return ts, suspect

    def _refuse(self, r: Reading) -> None:
        self.stats.ts_invalid += 1
        if r.signal in self._invalid_logged:
            return
        self._invalid_logged.add(r.signal)
        log.warning(
            "signal %s: refused a reading stamped %d ms, outside the range the wire contract "
            "accepts [%d, %d] (1677-09-21..2262-04-11); further ones of this signal are only "
            "counted",
            r.signal,
            r.ts,
            TS_MIN_MS,
            TS_MAX_MS,
        )


def rules_for(config: AgentConfig) -> dict[str, SignalRules]:
    """Every signal's rules; signals of a CSV back-fill keep their old timestamps."""
    backfill = {s.id for s in config.sources if s.type == "csv" and s.mode == "backfill"}
    return {s.id: SignalRules.from_signal(s, backfill=s.source in backfill) for s in config.signals}
