"""The timestamp guard of signal processing: the contract's range, clock jumps, back-fill.

Regressions: a reading stamped outside the range the wire contract accepts reached the spool
(and broke its validating decoder); one forward wall-clock glitch raised the per-signal floor
so every later reading was stamped in the future (and the floor survived restarts); CSV
back-fill timestamps were rewritten by the floor (a newest-first export became 0, 1, 2 ms).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.processing import (
    TS_BUMP_MAX_MS,
    TS_MAX_MS,
    TS_MIN_MS,
    SignalProcessor,
    SignalRules,
)
from shared.messages import Quality, Reading

T = 1_790_000_000_000
H = 3_600_000
DAY = 86_400_000
SENTINEL = 253_402_214_400_000  # 9999-12-31T00:00:00Z, a common "no date" in ERP exports


def live() -> SignalProcessor:
    return SignalProcessor({"s": SignalRules()}, min_valid_ms=T - DAY)


def backfill() -> SignalProcessor:
    return SignalProcessor({"s": SignalRules(backfill=True)})


# -- the contract's range ---------------------------------------------------------------------


def test_the_range_is_the_contracts() -> None:
    decoder = msgspec.json.Decoder(list[Reading])
    for ts in (TS_MIN_MS, TS_MAX_MS):
        decoder.decode(msgspec.json.encode([Reading("s", ts, 1.0)]))
    for ts in (TS_MIN_MS - 1, TS_MAX_MS + 1):
        with pytest.raises(msgspec.ValidationError):
            decoder.decode(msgspec.json.encode([Reading("s", ts, 1.0)]))


@pytest.mark.parametrize("make", [live, backfill])
def test_a_reading_outside_the_contracts_range_is_refused_and_counted(
    make: Callable[[], SignalProcessor], caplog: pytest.LogCaptureFixture
) -> None:
    p = make()
    with caplog.at_level(logging.WARNING, logger="edge_agent.processing"):
        out = p.process(
            [Reading("s", T, 1.0), Reading("s", SENTINEL, 2.0), Reading("s", T + H, 3.0)], 0
        )
        p.process([Reading("s", -SENTINEL, 4.0)], 1)
    assert [(r.ts, r.value, r.quality) for r in out] == [
        (T, 1.0, Quality.GOOD),
        (T + H, 3.0, Quality.GOOD),  # the sentinel did not raise the floor
    ]
    assert p.stats.ts_invalid == 2
    assert p.max_ts_ms in (0, T + H)
    assert "outside the range the wire contract accepts" in caplog.text
    assert caplog.text.count("refused") == 1  # once per signal; the rest is counted


def test_a_refused_reading_leaves_counter_state_alone() -> None:
    p = SignalProcessor({"s": SignalRules(counter_modulus=2.0**16)})
    p.process([Reading("s", T, 100.0)], 0)
    assert p.take_dirty_counters() == {"s": (100.0, 100.0)}
    assert p.process([Reading("s", SENTINEL, 50_000.0)], 1) == []
    assert p.take_dirty_counters() == {}
    (r,) = p.process([Reading("s", T + 1000, 110.0)], 2)
    assert r.value == 110.0


_any_ts = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(TS_MIN_MS - 10, TS_MIN_MS + 10),
    st.integers(TS_MAX_MS - 10, TS_MAX_MS + 10),
    st.integers(T - 2 * DAY, T + 2 * DAY),
)


@given(
    st.booleans(),
    st.one_of(st.just(0), _any_ts),
    st.lists(st.tuples(st.sampled_from(["s", "t"]), _any_ts), max_size=40),
)
def test_whatever_the_clock_says_every_output_passes_the_contract(
    is_backfill: bool, floor: int, stamps: list[tuple[str, int]]
) -> None:
    rules = SignalRules(backfill=is_backfill)
    p = SignalProcessor({"s": rules, "t": rules})
    p.restore({}, floor)
    out = p.process([Reading(sig, ts, 1.0) for sig, ts in stamps], 0)
    decoded = msgspec.json.decode(msgspec.json.encode(out), type=list[Reading])
    assert decoded == out
    assert len(out) + p.stats.ts_invalid == len(stamps)
    assert p.max_ts_ms == 0 or TS_MIN_MS <= p.max_ts_ms <= TS_MAX_MS


# -- small steps back are bumped, big jumps are accepted ----------------------------------------


def test_a_small_step_back_is_still_bumped_and_flagged() -> None:
    p = live()
    out = p.process([Reading("s", T, 1.0), Reading("s", T - TS_BUMP_MAX_MS + 1, 2.0)], 0)
    assert [(r.ts, r.quality) for r in out] == [(T, Quality.GOOD), (T + 1, Quality.UNCERTAIN)]
    assert p.stats.ts_bumped == 1
    assert p.stats.ts_jumped_back == 0


def test_a_forward_glitch_does_not_stamp_later_readings_in_the_future() -> None:
    p = live()
    out = p.process(
        [
            Reading("s", T, 0.0),
            Reading("s", T + 365 * DAY, 1.0),  # one bogus NTP/GPS answer, one poll
            Reading("s", T + 200, 2.0),  # corrected
            Reading("s", T + 1200, 3.0),
        ],
        0,
    )
    assert [(r.ts, r.quality) for r in out] == [
        (T, Quality.GOOD),
        (T + 365 * DAY, Quality.GOOD),  # the cloud bounds it; here nobody can tell yet
        (T + 200, Quality.UNCERTAIN),  # the jump back: kept as stamped, flagged
        (T + 1200, Quality.GOOD),  # and the floor followed it
    ]
    assert p.stats.ts_jumped_back == 1
    assert p.stats.ts_bumped == 0
    assert p.max_ts_ms == T + 1200  # what is persisted as the next start's floor


def test_a_jump_back_on_one_signal_leaves_the_others_floor() -> None:
    p = SignalProcessor({"s": SignalRules(), "t": SignalRules()})
    p.process([Reading("s", T + DAY, 1.0), Reading("t", T + 2 * DAY, 1.0)], 0)
    p.process([Reading("s", T, 2.0)], 1)
    assert p.max_ts_ms == T + 2 * DAY
    (r,) = p.process([Reading("t", T + 2 * DAY - 1000, 2.0)], 2)
    assert (r.ts, r.quality) == (T + 2 * DAY + 1, Quality.UNCERTAIN)


def test_a_far_restart_floor_does_not_hold_readings_back() -> None:
    p = live()
    p.restore({}, T + 365 * DAY)  # persisted by a glitch; no wall clock given
    out = p.process([Reading("s", T, 1.0), Reading("s", T + 1000, 2.0)], 0)
    assert [(r.ts, r.quality) for r in out] == [(T, Quality.UNCERTAIN), (T + 1000, Quality.GOOD)]


def test_restore_ignores_a_floor_far_ahead_of_the_wall_clock() -> None:
    p = live()
    p.restore({}, T + 365 * DAY, now_ms=T)
    assert p.max_ts_ms == 0
    (r,) = p.process([Reading("s", T + 1000, 1.0)], 0)
    assert (r.ts, r.quality) == (T + 1000, Quality.GOOD)


def test_restore_keeps_a_floor_just_ahead_of_the_wall_clock() -> None:
    p = live()
    p.restore({}, T + 2000, now_ms=T)  # the clock came up a little behind
    (r,) = p.process([Reading("s", T + 500, 1.0)], 0)
    assert (r.ts, r.quality) == (T + 2001, Quality.UNCERTAIN)


@pytest.mark.parametrize("floor", [TS_MAX_MS + 1, SENTINEL, -1])
def test_restore_ignores_a_floor_it_cannot_use(floor: int) -> None:
    p = live()
    p.restore({}, floor)
    assert p.max_ts_ms == 0


@given(st.lists(st.integers(T - DAY, T + DAY), min_size=1, max_size=50))
def test_live_readings_never_repeat_and_never_move_more_than_the_bump_limit(
    stamps: list[int],
) -> None:
    p = live()
    out = p.process([Reading("s", ts, 1.0) for ts in stamps], 0)
    assert len(out) == len(stamps)
    got = [r.ts for r in out]
    assert all(a != b for a, b in itertools.pairwise(got))
    for before, after in zip(stamps, got, strict=True):
        assert 0 <= after - before <= TS_BUMP_MAX_MS + len(stamps)


# -- back-fill keeps its history ---------------------------------------------------------------


def test_a_newest_first_export_keeps_its_timestamps() -> None:
    p = backfill()
    rows = [Reading("s", T - i * H, float(i)) for i in range(5)]
    out = p.process(rows, 0)
    assert out == rows
    assert p.stats.ts_bumped == 0
    assert p.stats.ts_jumped_back == 0


@given(st.lists(st.integers(TS_MIN_MS, TS_MAX_MS), max_size=40))
def test_backfill_timestamps_are_never_rewritten(stamps: list[int]) -> None:
    p = backfill()
    p.restore({}, T)
    rows = [Reading("s", ts, 1.0) for ts in stamps]
    assert [r.ts for r in p.process(rows, 0)] == stamps
    assert p.max_ts_ms == T
