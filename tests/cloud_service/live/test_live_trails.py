"""Consumption per hour from levels and a line's output: sums kept, receipts cut out."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_service.live.trails import HOUR_MS, hourly_decrease

T0 = 1_767_744_000_000


def _hours(n: int) -> np.ndarray:
    return T0 + HOUR_MS * np.arange(n, dtype=np.int64)


def test_a_lot_counted_an_hour_before_it_lands_is_not_counted_twice() -> None:
    # 10 used every hour; the line counts 60 in hour 2, the lot lands in hour 3
    level = np.array([500.0, 490.0, 480.0, 530.0, 520.0])
    made = np.array([0.0, 0.0, 60.0, 60.0, 60.0])
    _, used = hourly_decrease(_hours(5), level, made)
    assert used.tolist() == [10.0, 70.0, -50.0, 10.0]  # the lot, counted, then landed
    assert used.sum() == pytest.approx(40.0)  # the true total


def test_a_receipt_beyond_the_lines_output_counts_zero_not_negative_for_days() -> None:
    level = np.array([500.0, 490.0, 1280.0, 1270.0, 1260.0])  # 800 received in hour 2
    made = np.zeros(5)
    _, used = hourly_decrease(_hours(5), level, made)
    assert used.tolist() == [10.0, 0.0, 10.0, 10.0]  # not -790 in hour 2
    _, plain = hourly_decrease(_hours(5), level)
    assert plain.tolist() == used.tolist()


def test_a_receipt_while_the_line_runs_is_cut_out_not_spread_over_the_window() -> None:
    # 10 used an hour, the line lands 30 an hour, and 800 are received in hour 2
    level = np.array([1000.0, 1020.0, 1840.0, 1860.0])
    made = np.array([0.0, 30.0, 60.0, 90.0])
    _, used = hourly_decrease(_hours(4), level, made)
    assert used.tolist() == [10.0, 0.0, 10.0]  # the receipt's hour counts 0, as without a line


@given(
    st.lists(st.integers(0, 30), min_size=2, max_size=48),
    st.lists(st.integers(0, 3), min_size=2, max_size=48),
    st.integers(1, 2),
)
def test_with_output_landing_late_the_total_is_the_true_total(
    demand: list[int], lots: list[int], lag: int
) -> None:
    """Whatever the demand and however many lots land ``lag`` hours after they are counted
    (at most two), no consumption is lost or made up once every lot has landed."""
    n = min(len(demand), len(lots))
    lot = 20.0
    counted = np.array([0.0] + [lots[i] * lot for i in range(n)] + [0.0] * lag)
    landed = np.concatenate([np.zeros(lag), counted])[: counted.size]
    used_true = np.array([0.0] + [float(demand[i]) for i in range(n)] + [0.0] * lag)
    level = 10_000.0 + np.cumsum(landed) - np.cumsum(used_true)
    made = np.cumsum(counted)
    _, used = hourly_decrease(_hours(level.size), level, made)
    assert used.sum() == pytest.approx(used_true.sum())
