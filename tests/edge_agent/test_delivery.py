"""The pure delivery core: what is sent when, live before backlog, rate limit, window, acks,
resends only when the cloud is seen alive, replay of older boots first."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.delivery import Outbox, RangeSet, Send, TokenBucket


@given(st.lists(st.tuples(st.sampled_from(["add", "discard", "upto"]), st.integers(1, 60))))
def test_rangeset_behaves_like_a_set(ops: list[tuple[str, int]]) -> None:
    rs, model = RangeSet(), set[int]()
    for op, x in ops:
        if op == "add":
            rs.add(x)
            model.add(x)
        elif op == "discard":
            rs.discard(x)
            model.discard(x)
        else:
            rs.discard_upto(x)
            model = {v for v in model if v > x}
        assert len(rs) == len(model)
        assert all((v in rs) == (v in model) for v in range(0, 62))
        spans = rs.intervals()
        assert all(lo <= hi for lo, hi in spans)
        assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(spans))  # disjoint
        for start in range(0, 62, 7):
            expect = start
            while expect in model:
                expect += 1
            assert rs.next_missing(start) == expect


def test_token_bucket_refills_and_goes_into_debt() -> None:
    b = TokenBucket(rate_per_s=1000, burst=500)
    assert b.available(0) == 500
    b.take(800, 0)
    assert b.available(0) == -300
    assert b.wait_ms(0) == 302  # until one token: (1 + 300) ms at 1 token/ms, rounded up
    assert b.available(301) == pytest.approx(1)
    assert b.available(10_000) == 500  # capped at the burst
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1)


def outbox(**kw: int) -> Outbox:
    params = {"window": 3, "live_queue_max": 10, "resend_after_ms": 1000, "resend_max_ms": 4000}
    params.update(kw)
    rate = params.pop("rate", 1_000_000)
    return Outbox(current_boot="b2", bucket=TokenBucket(rate, rate), **params)


def drain(o: Outbox, now: int = 0, puback: bool = True) -> list[Send]:
    out = []
    while (s := o.next_send(now)) is not None:
        out.append(s)
        if puback:
            o.on_puback()
    return out


def test_nothing_is_sent_while_disconnected_and_it_becomes_historical_backlog() -> None:
    o = outbox()
    for seq in (1, 2):
        o.opened(seq)
        o.committed(seq)
    assert o.next_send(0) is None
    o.on_connect()
    assert drain(o) == [Send("b2", 1, True, 1), Send("b2", 2, True, 1)]


def test_live_goes_first_and_is_not_historical() -> None:
    o = outbox()
    o.committed(1)  # closed while offline: backlog
    o.on_connect()
    o.committed(2)
    o.committed(3)
    sends = drain(o)
    assert [(s.seq, s.historical) for s in sends] == [(2, False), (3, False), (1, True)]
    assert all(s.first_unacked == 1 for s in sends)


def test_open_batches_are_never_sent() -> None:
    o = outbox()
    o.on_connect()
    o.opened(1)
    o.opened(2)  # a historical lane batch open too
    o.committed(2)
    assert [s.seq for s in drain(o)] == [2]
    o.committed(1)
    assert [s.seq for s in drain(o)] == [1]


def test_window_limits_what_is_in_the_transport() -> None:
    o = outbox(window=2)
    o.on_connect()
    for seq in (1, 2, 3):
        o.committed(seq)
    assert [s.seq for s in drain(o, puback=False)] == [1, 2]
    o.on_puback()
    assert [s.seq for s in drain(o, puback=False)] == [3]


def test_backlog_is_rate_limited_in_readings() -> None:
    o = outbox(rate=100)  # 100 readings/s, burst 100
    for seq in (1, 2, 3):
        o.committed(seq)
    o.on_connect()
    first = o.next_send(0)
    assert first is not None
    o.on_puback()
    o.charge(150, 0)  # the batch held 150 readings: the bucket is 50 in debt
    assert o.next_send(0) is None
    wake = o.wake_ms(0)
    assert wake is not None
    assert wake > 0
    assert o.next_send(wake) is not None
    o.committed(4)  # live data is not held back by the rate limit
    o.charge(1000, wake)
    assert (live := o.next_send(wake)) is not None
    assert live.historical is False


def test_a_historical_batch_of_the_current_boot_waits_for_the_rate_limit() -> None:
    o = outbox(rate=100)  # a CSV back-fill closes historical batches while connected
    o.on_connect()
    for seq in (1, 2, 3):
        o.committed(seq, historical=True)
    first = o.next_send(0)
    assert first is not None
    assert first.historical
    o.on_puback()
    o.charge(100, 0)  # the burst is spent
    assert o.next_send(0) is None  # not sent as live data, all at once
    o.committed(4)  # a live batch still goes at once, and first
    live = o.next_send(0)
    assert live is not None
    assert (live.seq, live.historical) == (4, False)
    assert o.stats.live_sent == 1


def test_ack_frees_and_moves_first_unacked() -> None:
    o = outbox()
    o.on_connect()
    for seq in (1, 2, 3):
        o.committed(seq)
    drain(o)
    assert o.on_ack("b2", 2, fresh=True, now_ms=10) == 2
    assert o.on_ack("b2", 2, fresh=True, now_ms=11) is None  # nothing new
    o.committed(4)
    (send,) = drain(o)
    assert (send.seq, send.first_unacked) == (4, 3)
    assert o.on_ack("other-boot", 9, fresh=True, now_ms=12) is None


def test_older_boots_replay_first_with_their_own_first_unacked() -> None:
    o = outbox()
    o.add_stream("b0", lo=7, top=8)
    o.add_stream("b1", lo=1, top=1)
    o.committed(1)
    o.on_connect()
    o.committed(2)  # live
    sends = drain(o)
    assert [(s.boot, s.seq, s.historical, s.first_unacked) for s in sends] == [
        ("b2", 2, False, 1),
        ("b0", 7, True, 7),
        ("b0", 8, True, 7),
        ("b1", 1, True, 1),
        ("b2", 1, True, 1),
    ]
    o.on_ack("b0", 8, fresh=False, now_ms=0)
    assert o.retire_empty() == ["b0"]
    assert o.stream("b0") is None


def test_disconnect_turns_queued_live_batches_into_backlog() -> None:
    o = outbox(window=1)
    o.on_connect()
    o.committed(1)
    o.committed(2)
    assert o.next_send(0) == Send("b2", 1, False, 1)
    o.on_disconnect()
    o.on_puback()  # paho delivered batch 1 after all
    o.on_connect()
    assert o.next_send(0) == Send("b2", 2, True, 1)


def test_no_resend_while_the_cloud_is_silent() -> None:
    o = outbox(resend_after_ms=1000)
    o.on_connect()
    o.committed(1)
    drain(o, now=0)
    o.on_ack("b2", 0, fresh=False, now_ms=50_000)  # a retained replay: not proof of life
    assert drain(o, now=50_000) == []
    assert o.stats.rewinds == 0


def test_a_stalled_stream_is_resent_when_the_cloud_acks_other_things() -> None:
    o = outbox(resend_after_ms=1000, resend_max_ms=4000)
    o.add_stream("b1", lo=5, top=5)
    o.on_connect()
    o.committed(1)
    assert [s.seq for s in drain(o, now=0)] == [1, 5]
    o.on_ack("b2", 1, fresh=True, now_ms=500)  # b2 moves; b1's batch 5 lost on the way
    assert drain(o, now=500) == []
    o.on_ack("b2", 1, fresh=True, now_ms=999)
    assert drain(o, now=999) == []  # not yet resend_after since it was sent
    o.on_ack("b2", 1, fresh=True, now_ms=1000)
    assert drain(o, now=1000) == [Send("b1", 5, True, 5)]
    assert o.stats.rewinds == 1
    # the next resend waits twice as long
    o.on_ack("b2", 1, fresh=True, now_ms=2500)
    assert drain(o, now=2500) == []
    o.on_ack("b2", 1, fresh=True, now_ms=3000)
    assert [s.seq for s in drain(o, now=3000)] == [5]


def test_requeue_puts_a_live_batch_back_in_front() -> None:
    o = outbox()
    o.on_connect()
    o.committed(1)
    o.committed(2)
    send = o.next_send(0)
    assert send is not None
    o.requeue(send)  # paho said queue full
    assert o.inflight == 0
    assert [(s.seq, s.historical) for s in drain(o)] == [(1, False), (2, False)]


def test_dropped_batches_are_not_sent_and_move_first_unacked() -> None:
    o = outbox()
    for seq in (1, 2, 3):
        o.committed(seq)
    o.dropped("b2", 2)
    o.on_connect()
    assert drain(o) == [Send("b2", 3, True, 3)]


def test_live_queue_overflow_turns_into_backlog() -> None:
    o = outbox(window=1, live_queue_max=2)
    o.on_connect()
    for seq in (1, 2, 3, 4):
        o.committed(seq)
    sends = drain(o)
    assert [(s.seq, s.historical) for s in sends] == [(3, False), (4, False), (1, True), (2, True)]


def test_batches_just_sent_are_protected_from_the_spool_policy_until_overdue() -> None:
    o = outbox(resend_after_ms=1000)
    o.add_stream("b1", lo=3, top=4)
    o.on_connect()
    o.committed(1)
    assert o.in_flight_floor(0) == {}  # nothing sent yet: everything may be dropped
    drain(o, now=0)  # sends b2/1 (live), then b1/3, b1/4
    assert o.in_flight_floor(500) == {"b1": 3, "b2": 1}
    o.on_ack("b2", 1, fresh=True, now_ms=600)
    assert o.in_flight_floor(700) == {"b1": 3}
    assert o.in_flight_floor(1000) == {}  # overdue: the policy may drop it (and count it)
