"""The ack never covers a batch that was not stored, whatever order batches arrive in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cloud_service.ingest.sequence import SequenceTracker


def test_in_order_batches_advance_the_ack() -> None:
    tracker = SequenceTracker()
    assert [tracker.stored("g", "b", s).ack for s in (1, 2, 3)] == [1, 2, 3]


def test_a_gap_holds_the_ack_until_it_is_filled() -> None:
    tracker = SequenceTracker()
    tracker.stored("g", "b", 1)
    after_gap = tracker.stored("g", "b", 3)
    assert (after_gap.ack, after_gap.missing) == (1, 1)
    filled = tracker.stored("g", "b", 2)
    assert (filled.ack, filled.missing) == (3, 0)


def test_duplicates_are_counted_and_still_acked() -> None:
    tracker = SequenceTracker()
    tracker.stored("g", "b", 1)
    again = tracker.stored("g", "b", 1)
    assert again.duplicate
    assert again.ack == 1
    assert tracker.duplicates == 1


def test_boots_are_separate_streams() -> None:
    tracker = SequenceTracker()
    tracker.stored("g", "boot-1", 1)
    tracker.stored("g", "boot-1", 2)
    assert tracker.stored("g", "boot-2", 1).ack == 1
    assert tracker.ack_for("g", "boot-1") == 2


def test_first_unacked_lets_a_fresh_tracker_resume() -> None:
    tracker = SequenceTracker()  # e.g. the cloud restarted and lost its memory
    assert tracker.stored("g", "b", 501, first_unacked=501).ack == 501
    assert tracker.stored("g", "b", 503, first_unacked=501).ack == 501


def test_pending_is_bounded_without_acking_past_a_gap() -> None:
    tracker = SequenceTracker(max_pending=3)
    for seq in range(3, 10):
        assert tracker.stored("g", "b", seq).ack == 0
    assert tracker.stored("g", "b", 1).ack == 1
    assert tracker.stored("g", "b", 2).ack <= 5  # only what is remembered as stored


def test_streams_are_bounded() -> None:
    tracker = SequenceTracker(max_streams=2)
    for boot in ("a", "b", "c"):
        tracker.stored("g", boot, 1)
    assert tracker.ack_for("g", "a") == 0
    assert tracker.ack_for("g", "c") == 1


@given(
    order=st.permutations(list(range(1, 30))),
    lost=st.sets(st.integers(1, 29), max_size=5),
    dupes=st.lists(st.integers(1, 29), max_size=10),
    max_pending=st.integers(1, 40),
)
def test_ack_is_always_the_highest_contiguous_stored_seq(
    order: list[int], lost: set[int], dupes: list[int], max_pending: int
) -> None:
    tracker = SequenceTracker(max_pending=max_pending)
    stored: set[int] = set()
    for seq in [s for s in order if s not in lost] + [d for d in dupes if d not in lost]:
        result = tracker.stored("g", "b", seq)
        stored.add(seq)
        # Safety: every seq up to the ack really was stored.
        assert all(s in stored for s in range(1, result.ack + 1))
    # Liveness, when nothing is lost and memory suffices: everything is acked.
    if not lost and max_pending >= 29:
        assert tracker.ack_for("g", "b") == 29


def test_gaps_fills_and_duplicates_are_counted_per_stream() -> None:
    tracker = SequenceTracker()
    for seq in (1, 2, 5):  # 3 and 4 missing
        tracker.stored("g", "b", seq)
    assert tracker.stored("g", "b", 7).new_gap == 1  # 6 missing too
    assert tracker.stored("g", "b", 4).filled  # a replay fills a gap
    assert tracker.stored("g", "b", 2).duplicate
    snap = tracker.snapshot("g", "b")
    assert snap is not None
    assert (snap.contiguous, snap.pending, snap.gaps, snap.filled, snap.duplicates) == (
        2, (4, 5, 7), 3, 1, 1,
    )  # fmt: skip
    assert tracker.missing() == 2  # 3 and 6


def test_a_new_boot_starts_cleanly_and_the_old_one_can_still_be_replayed() -> None:
    tracker = SequenceTracker()
    for seq in (1, 2, 4):
        tracker.stored("g", "boot-1", seq)
    fresh = tracker.stored("g", "boot-2", 1)
    assert (fresh.ack, fresh.missing, fresh.new_gap) == (1, 0, 0)
    assert tracker.stored("g", "boot-1", 3).ack == 4  # the old boot's spool replayed


def test_a_peer_report_merges_without_counting_duplicates() -> None:
    tracker = SequenceTracker()
    tracker.stored("g", "b", 1)
    tracker.stored("g", "b", 3)
    assert tracker.merge("g", "b", contiguous=0, seqs=[2, 4]) == 4
    assert tracker.merge("g", "b", contiguous=6, seqs=[]) == 6  # a healed lost report
    assert tracker.duplicates == 0


def test_dirty_streams_are_saved_once_and_restored_exactly() -> None:
    tracker = SequenceTracker()
    tracker.stored("g", "b", 1)
    tracker.stored("g", "b", 3)
    tracker.stored("h", "b", 1)
    saved = tracker.take_dirty(now_ms=5)
    assert sorted((s.gateway, s.updated_ms) for s in saved) == [("g", 5), ("h", 5)]
    assert tracker.take_dirty(now_ms=6) == []
    restored = SequenceTracker()
    restored.restore(saved)
    assert restored.stored("g", "b", 2).ack == 3
    assert restored.ack_for("h", "b") == 1
