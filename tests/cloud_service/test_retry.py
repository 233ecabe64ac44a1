"""The pure backoff policy: full jitter under an exponential, capped ceiling; Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_service.storage.retry import Backoff, parse_retry_after

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_ceiling_doubles_then_caps() -> None:
    b = Backoff(base_s=0.1, cap_s=1.0, max_retries=10)
    assert [b.ceiling(a) for a in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_ceiling_survives_huge_attempt_numbers() -> None:
    assert Backoff(base_s=0.1, cap_s=3.0).ceiling(10_000) == 3.0


@given(attempt=st.integers(0, 200), seed=st.integers(0, 2**32))
def test_delay_is_full_jitter_below_the_ceiling(attempt: int, seed: int) -> None:
    b = Backoff(base_s=0.05, cap_s=2.0, max_retries=3)
    d = b.delay(attempt, random.Random(seed))
    assert 0.0 <= d <= b.ceiling(attempt)


def test_delay_spreads_over_the_whole_interval() -> None:
    b = Backoff(base_s=1.0, cap_s=1.0)
    rng = random.Random(1)
    draws = [b.delay(0, rng) for _ in range(2000)]
    assert min(draws) < 0.05
    assert max(draws) > 0.95
    assert 0.45 < sum(draws) / len(draws) < 0.55


def test_delay_is_reproducible_with_a_seeded_rng() -> None:
    b = Backoff()
    assert [b.delay(a, random.Random(7)) for a in range(5)] == [
        b.delay(a, random.Random(7)) for a in range(5)
    ]


def test_retry_after_wins_and_is_clamped() -> None:
    b = Backoff(base_s=0.1, cap_s=0.2, max_retry_after_s=30.0)
    rng = random.Random(0)
    assert b.delay(0, rng, retry_after=5.0) == 5.0
    assert b.delay(0, rng, retry_after=3600.0) == 30.0
    assert b.delay(0, rng, retry_after=-1.0) == 0.0


def test_should_retry_counts_retries_after_the_first_attempt() -> None:
    b = Backoff(max_retries=2)
    assert [b.should_retry(a) for a in range(4)] == [True, True, False, False]
    assert not Backoff(max_retries=0).should_retry(0)


@pytest.mark.parametrize(
    "kwargs",
    [{"base_s": -1.0}, {"cap_s": -0.1}, {"max_retries": -1}, {"max_retry_after_s": -5.0}],
)
def test_invalid_backoff_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().ceiling(-1)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        (None, None),
        ("", None),
        ("-3", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


def test_parse_retry_after_http_date() -> None:
    future = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    past = format_datetime(NOW - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(future, NOW) == 90.0
    assert parse_retry_after(past, NOW) == 0.0
