"""Pure signal processing: report by exception, counters, timestamps, clock checks."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import SignalConfig
from edge_agent.processing import (
    ClockWatch,
    CounterEvent,
    CounterState,
    ReportByException,
    SignalProcessor,
    SignalRules,
)
from shared.messages import Quality, Reading

T0 = 1_750_000_000_000


def signal(**kw: Any) -> SignalConfig:
    values: dict[str, Any] = {"id": "s1", "source": "src", "kind": "sensor", "address": 0}
    values.update(kw)
    return SignalConfig.from_mapping(values)


def test_without_deadband_every_sample_is_reported() -> None:
    rbe = ReportByException(SignalRules())
    assert all(rbe.offer(1.0, Quality.GOOD, t) for t in range(5))


def test_absolute_deadband_and_heartbeat() -> None:
    rbe = ReportByException(SignalRules(deadband=0.5, heartbeat_ms=10_000))
    assert rbe.offer(10.0, Quality.GOOD, 0)  # first sample
    assert not rbe.offer(10.4, Quality.GOOD, 1)
    assert not rbe.offer(10.5, Quality.GOOD, 2)  # must *exceed* the deadband
    assert rbe.offer(10.6, Quality.GOOD, 3)
    assert not rbe.offer(10.2, Quality.GOOD, 4)  # measured from the last *reported* value
    assert rbe.offer(10.0, Quality.GOOD, 3 + 10_000)  # heartbeat
    assert rbe.offer(None, Quality.COMM_FAILURE, 10_004)  # quality change
    assert not rbe.offer(None, Quality.COMM_FAILURE, 10_005)
    assert rbe.offer(10.0, Quality.GOOD, 10_006)  # back


def test_percent_deadband_is_relative_to_the_last_report() -> None:
    rbe = ReportByException(SignalRules(deadband_percent=1.0))
    assert rbe.offer(200.0, Quality.GOOD, 0)
    assert not rbe.offer(201.9, Quality.GOOD, 1)
    assert rbe.offer(202.1, Quality.GOOD, 2)


def counter(bits: int = 16, max_step: float | None = None) -> CounterState:
    return CounterState(float(2**bits), max_step)


def test_counter_rollover_16_bit() -> None:
    c = counter(16, max_step=1000)
    assert c.update(65_530) == (65_530, CounterEvent.NONE)
    assert c.update(65_535) == (65_535, CounterEvent.NONE)
    assert c.update(4) == (65_540, CounterEvent.ROLLOVER)  # 65535 -> 0 -> 4: five more
    assert c.update(10) == (65_546, CounterEvent.NONE)


def test_counter_rollover_32_bit() -> None:
    c = counter(32, max_step=100)
    c.update(2**32 - 10)
    total, event = c.update(5)
    assert (total, event) == (2**32 + 5, CounterEvent.ROLLOVER)


def test_counter_reset_counts_from_zero_and_never_goes_back() -> None:
    c = counter(32, max_step=1000)
    c.update(5000)
    c.update(5100)
    assert c.update(7) == (5107, CounterEvent.RESET)  # device restarted: 7 made since
    assert c.update(20) == (5120, CounterEvent.NONE)


def test_counter_giant_jump_is_not_counted() -> None:
    c = counter(32, max_step=1000)
    c.update(100)
    assert c.update(3_000_000) == (100, CounterEvent.JUMP)
    assert c.update(3_000_010) == (110, CounterEvent.NONE)  # counting resumes from there


@given(
    st.sampled_from([16, 32]),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=60),
    st.integers(1, 5000),
)
def test_counter_total_never_decreases_nor_leaps(bits: int, raws: list[int], step: int) -> None:
    c = counter(bits, max_step=float(step))
    modulus = 2**bits
    previous = None
    for raw in raws:
        total, _ = c.update(float(raw % modulus))
        if previous is not None:
            assert 0 <= total - previous <= step
        previous = total


def processor(**kw: Any) -> SignalProcessor:
    return SignalProcessor({"s1": SignalRules.from_signal(signal(**kw))}, min_valid_ms=T0 - 1)


def test_processor_publishes_counter_totals_and_flags_resets() -> None:
    p = processor(kind="production_count", counter_bits=16, counter_max_step=500)
    out = p.process(
        [
            Reading("s1", T0, 65_500.0),
            Reading("s1", T0 + 1, 20.0),  # rollover
            Reading("s1", T0 + 2, 1000.0),  # +980: a jump
        ],
        0,
    )
    assert [(r.value, r.quality) for r in out] == [
        (65_500.0, Quality.GOOD),
        (65_556.0, Quality.GOOD),
        (65_556.0, Quality.UNCERTAIN),
    ]
    assert p.take_dirty_counters() == {"s1": (1000.0, 65_556.0)}
    assert p.take_dirty_counters() == {}
    assert p.stats.counter_events == {"rollover": 1, "jump": 1}


def test_counter_state_survives_a_restart() -> None:
    p = processor(kind="production_count", counter_bits=32)
    p.restore({"s1": (100.0, 12_345.0)}, ts_floor_ms=0)
    (r,) = p.process([Reading("s1", T0, 110.0)], 0)
    assert r.value == 12_355.0


def test_timestamps_never_repeat_or_go_back() -> None:
    p = processor()
    out = p.process(
        [Reading("s1", T0, 1.0), Reading("s1", T0, 2.0), Reading("s1", T0 - 5000, 3.0)], 0
    )
    assert [r.ts for r in out] == [T0, T0 + 1, T0 + 2]
    assert [r.quality for r in out] == [Quality.GOOD, Quality.UNCERTAIN, Quality.UNCERTAIN]
    assert p.stats.ts_bumped == 2
    assert p.max_ts_ms == T0 + 2


def test_restart_floor_keeps_a_backwards_clock_from_overwriting_points() -> None:
    p = processor()
    p.restore({}, ts_floor_ms=T0 + 6_000)  # before the restart we published up to here
    (r,) = p.process([Reading("s1", T0, 1.0)], 0)
    assert r.ts == T0 + 6_001
    assert r.quality == Quality.UNCERTAIN


def test_restart_floor_far_ahead_is_a_clock_jump_not_a_bump() -> None:
    p = processor()
    p.restore({}, ts_floor_ms=T0 + 60_000)
    (r,) = p.process([Reading("s1", T0, 1.0)], 0)
    assert (r.ts, r.quality) == (T0, Quality.UNCERTAIN)  # kept as stamped, flagged


def test_backfill_signals_are_exempt_from_the_restart_floor() -> None:
    rules = SignalRules.from_signal(signal(), backfill=True)
    p = SignalProcessor({"s1": rules})
    p.restore({}, ts_floor_ms=T0)
    (r,) = p.process([Reading("s1", T0 - 86_400_000, 1.0)], 0)
    assert (r.ts, r.quality) == (T0 - 86_400_000, Quality.GOOD)
    assert p.max_ts_ms == T0  # back-filled times never raise the floor


def test_an_unset_clock_makes_readings_uncertain() -> None:
    p = SignalProcessor({"s1": SignalRules()}, min_valid_ms=T0)
    (r,) = p.process([Reading("s1", 86_400_000, 1.0)], 0)  # 1970: the Pi's clock after boot
    assert r.quality == Quality.UNCERTAIN
    assert p.stats.uncertain_clock == 1


def test_deadband_suppression_is_counted_and_reconfigure_keeps_unchanged_state() -> None:
    p = processor(deadband=1.0, heartbeat_s=3600)
    out = p.process([Reading("s1", T0 + i, 10.0 + i * 0.1) for i in range(5)], 0)
    assert [r.value for r in out] == [10.0]
    assert p.stats.suppressed == 4
    p.reconfigure({"s1": SignalRules.from_signal(signal(deadband=1.0, heartbeat_s=3600))})
    assert p.process([Reading("s1", T0 + 10, 10.5)], 1) == []  # same rules: state kept
    p.reconfigure({"s1": SignalRules()})
    assert len(p.process([Reading("s1", T0 + 11, 10.5)], 2)) == 1


def test_clock_watch_reports_steps_above_the_threshold() -> None:
    w = ClockWatch(threshold_ms=1000)
    assert w.observe(T0, 0) == 0
    assert w.observe(T0 + 500, 400) == 0
    assert w.observe(T0 - 3_600_000, 500) == -3_600_000 - 600
