"""The pure batching state machine: seq numbering, size and age flushes, no loss, no dups."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.batcher import Batcher
from shared.codec import TelemetryDecoder, encode, make_reading
from shared.messages import Quality, Reading, TelemetryBatch


def readings(n: int, start: int = 0) -> list[Reading]:
    return [
        make_reading(f"s{i % 3}", 1_700_000_000_000 + i, float(i), Quality.GOOD)
        for i in range(start, start + n)
    ]


def batcher(max_readings: int = 3, max_age_ms: int = 1000, first_seq: int = 1) -> Batcher:
    return Batcher(
        gateway="gw-01",
        boot="b1",
        max_readings=max_readings,
        max_age_ms=max_age_ms,
        first_seq=first_seq,
    )


def test_size_flush_and_seq_increments() -> None:
    b = batcher(max_readings=3)
    out = b.add(readings(7), now_ms=0)
    assert [x.seq for x in out] == [1, 2]
    assert [len(x.readings) for x in out] == [3, 3]
    assert b.pending == 1
    assert b.next_seq == 3
    more = b.add(readings(2, start=7), now_ms=1)
    assert [x.seq for x in more] == [3]
    assert [r.value for r in more[0].readings] == [6.0, 7.0, 8.0]
    assert all(x.gateway == "gw-01" and x.boot == "b1" and not x.historical for x in out + more)


def test_first_seq_is_configurable() -> None:
    b = batcher(max_readings=1, first_seq=41)
    assert [x.seq for x in b.add(readings(2), now_ms=0)] == [41, 42]


def test_age_flush() -> None:
    b = batcher(max_readings=100, max_age_ms=1000)
    assert b.due_ms() is None
    assert b.poll(10_000) == []  # nothing pending
    assert b.add(readings(2), now_ms=500) == []
    assert b.due_ms() == 1500
    assert b.add(readings(1, start=2), now_ms=900) == []
    assert b.due_ms() == 1500  # age counts from the first pending reading
    assert b.poll(1499) == []
    (batch,) = b.poll(1500)
    assert (batch.seq, len(batch.readings)) == (1, 3)
    assert b.due_ms() is None
    assert b.pending == 0


def test_add_emits_an_overdue_batch_before_adding() -> None:
    b = batcher(max_readings=100, max_age_ms=1000)
    b.add(readings(2), now_ms=0)
    out = b.add(readings(1, start=2), now_ms=5000)  # the timer was late
    assert [(x.seq, len(x.readings)) for x in out] == [(1, 2)]
    assert b.pending == 1
    assert b.due_ms() == 6000


def test_flush() -> None:
    b = batcher()
    assert b.flush() == []
    b.add(readings(2), now_ms=0)
    (batch,) = b.flush()
    assert (batch.seq, len(batch.readings)) == (1, 2)
    assert b.flush() == []
    assert b.next_seq == 2


def test_clock_step_goes_into_the_next_batch_only() -> None:
    b = batcher(max_readings=2)
    b.note_clock_step(-3_600_000)
    b.note_clock_step(1_500)
    first = b.add(readings(2), now_ms=0)[0]
    assert first.clock_step_ms == 3_600_000  # the largest step, as a magnitude
    second = b.add(readings(2, start=2), now_ms=1)[0]
    assert second.clock_step_ms == 0


def test_batches_are_contract_valid() -> None:
    b = batcher(max_readings=3)
    rs = [*readings(2), make_reading("s9", 1_700_000_000_005, None, Quality.COMM_FAILURE)]
    (batch,) = b.add(rs, now_ms=0)
    decoded = TelemetryDecoder().decode(
        encode(batch), now_ms=1_700_000_000_010, expect_gateway="gw-01"
    )
    assert decoded.rejected == []
    assert decoded.batch == batch


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="max_readings"):
        batcher(max_readings=0)
    with pytest.raises(ValueError, match="max_age_ms"):
        batcher(max_age_ms=-1)
    with pytest.raises(ValueError, match="first_seq"):
        batcher(first_seq=-1)


def test_the_open_batch_has_its_final_seq_and_readings() -> None:
    """What the spool persists at every poll is exactly what the batch will hold."""
    b = batcher(max_readings=3)
    assert b.open_batches() == []
    b.add(readings(2), now_ms=0)
    (open_,) = b.open_batches()
    assert (open_.seq, open_.historical, len(open_.readings)) == (1, False, 2)
    (closed,) = b.add(readings(1, start=2), now_ms=1)
    assert closed.seq == open_.seq
    assert tuple(closed.readings[:2]) == open_.readings
    assert b.open_batches() == []


def test_historical_lane_gets_its_own_batches_and_the_shared_numbering() -> None:
    b = batcher(max_readings=2, max_age_ms=100)
    assert b.add(readings(1), now_ms=0) == []  # live batch 1 opens
    (hist,) = b.add(readings(2, start=1), now_ms=0, historical=True)  # historical batch 2
    assert (hist.seq, hist.historical) == (2, True)
    assert b.next_seq == 1  # the live batch still open
    (live,) = b.poll(100)
    assert (live.seq, live.historical, len(live.readings)) == (1, False, 1)
    assert b.next_seq == 3
    assert b.last_seq == 2


def test_configure_keeps_the_open_batch() -> None:
    b = batcher(max_readings=10)
    b.add(readings(3), now_ms=0)
    b.configure(max_readings=2, max_age_ms=50)
    (batch,) = b.add(readings(1, start=3), now_ms=1)  # over the new size: closes now
    assert (batch.seq, len(batch.readings)) == (1, 4)


# An operation: add n readings after advancing the clock by dt, poll after dt, or flush.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 25), st.integers(0, 700)),
        st.tuples(st.just("poll"), st.just(0), st.integers(0, 2000)),
        st.tuples(st.just("flush"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@given(operations, st.integers(1, 10), st.integers(0, 1500))
def test_no_reading_lost_or_duplicated(
    ops: list[tuple[str, int, int]], max_readings: int, max_age_ms: int
) -> None:
    b = batcher(max_readings=max_readings, max_age_ms=max_age_ms)
    now = 0
    sent: list[Reading] = []
    out: list[TelemetryBatch] = []
    for op, n, dt in ops:
        now += dt
        if op == "add":
            new = readings(n, start=len(sent))
            sent.extend(new)
            out.extend(b.add(new, now))
        elif op == "poll":
            out.extend(b.poll(now))
        else:
            out.extend(b.flush())
        due = b.due_ms()
        # Nothing pending stays past its due time after a poll; nothing is pending unaged.
        assert (due is None) == (b.pending == 0)
    out.extend(b.flush())

    received = [r for batch in out for r in batch.readings]
    assert received == sent  # exactly once, in order
    assert [batch.seq for batch in out] == list(range(1, len(out) + 1))
    assert all(1 <= len(batch.readings) <= max_readings for batch in out)
    assert b.pending == 0
    assert b.next_seq == len(out) + 1
