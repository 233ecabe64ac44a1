"""The plan book: validation by field, and lookups that agree with a naive scan."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_service.plans import (
    DemandTarget,
    PlanBook,
    PlanError,
    ProductionTarget,
    ScheduledReceipt,
    SkuPolicy,
)
from cloud_service.plans.model import MAX_MS

H = 3_600_000


def test_a_policy_is_found_for_its_location_else_site_wide() -> None:
    site_wide = SkuPolicy("p1", "A", lead_time_h=48)
    at_w2 = SkuPolicy("p1", "A", "W2", lead_time_h=12, safety_stock=5)
    book = PlanBook(skus=(site_wide, at_w2))
    assert book.policy("p1", "A", "W2") is at_w2
    assert book.policy("p1", "A", "W9") is site_wide
    assert book.policy("p1", "A") is site_wide
    assert book.policy("p1", "B") is None
    assert book.policy("p2", "A", "W2") is None
    only_located = PlanBook(skus=(at_w2,))
    assert only_located.policy("p1", "A") is None


def test_production_targets_contain_start_but_not_end() -> None:
    early = ProductionTarget("p1", "L1", 6 * H, 14 * H, 1200)
    late = ProductionTarget("p1", "L1", 14 * H, 22 * H, 1000)
    of_a = ProductionTarget("p1", "L1", 0, 24 * H, 300, sku="A", period="day")
    book = PlanBook(production=(late, of_a, early))
    assert book.production_at("p1", "L1", 6 * H) == [of_a, early]
    assert book.production_at("p1", "L1", 14 * H) == [of_a, late]
    assert book.production_at("p1", "L1", 22 * H) == [of_a]
    assert book.production_at("p1", "L1", 24 * H) == []
    assert book.production_at("p1", "L2", 7 * H) == []


def test_demand_is_found_and_spread_pro_rata() -> None:
    first = DemandTarget("p1", "A", 0, 10 * H, 100)
    second = DemandTarget("p1", "A", 10 * H, 20 * H, 50)
    at_w2 = DemandTarget("p1", "A", 0, 20 * H, 40, location="W2")
    book = PlanBook(demand=(second, first, at_w2))
    assert book.demand_at("p1", "A", 10 * H) is second
    assert book.demand_at("p1", "A", 20 * H) is None
    assert book.demand_at("p1", "A", 5 * H, "W2") is at_w2
    assert book.demand_at("p1", "A", 5 * H, "W3") is first  # no plan for W3: site-wide
    assert book.demand_between("p1", "A", 5 * H, 15 * H) == pytest.approx(75)
    assert book.demand_between("p1", "A", -H, 30 * H) == pytest.approx(150)
    assert book.demand_between("p1", "A", 5 * H, 15 * H, "W2") == pytest.approx(20)
    assert book.demand_between("p1", "A", 15 * H, 5 * H) == 0.0
    assert book.demand_between("p1", "B", 0, 20 * H) == 0.0


@pytest.mark.parametrize(
    ("build", "fields"),
    [
        (lambda: SkuPolicy("p 1", "A"), ["site"]),
        (lambda: SkuPolicy("p1", "A", service_level=1.0), ["service_level"]),
        (lambda: SkuPolicy("p1", "A", service_level=0), ["service_level"]),
        (lambda: SkuPolicy("p1", "A", lead_time_h=-1, review_h=math.inf),
         ["lead_time_h", "review_h"]),
        (lambda: ProductionTarget("p1", "L/1", 10, 10, math.nan), ["line", "end_ms", "quantity"]),
        (lambda: ProductionTarget("p1", "L1", 1.5, 10, 1), ["start_ms"]),  # type: ignore[arg-type]
        (lambda: DemandTarget("p1", "A", -1, 10, 1, location=""), ["location", "start_ms"]),
        (lambda: DemandTarget("p1", "A", 0, 10, True), ["quantity"]),
    ],
)  # fmt: skip
def test_invalid_values_are_refused_by_field(build: object, fields: list[str]) -> None:
    assert callable(build)
    with pytest.raises(PlanError) as info:
        build()
    assert info.value.fields == fields


def test_receipts_are_found_for_their_location_sorted_and_after_a_time() -> None:
    late = ScheduledReceipt("p1", "A", 30 * H, 500, reference="PO-2")
    early = ScheduledReceipt("p1", "A", 10 * H, 200.5, reference="PO-1")
    same_time = ScheduledReceipt("p1", "A", 10 * H, 50)  # no reference: never a duplicate
    unreferenced = ScheduledReceipt("p1", "A", 10 * H, 50)
    at_w2 = ScheduledReceipt("p1", "A", 20 * H, 80, "W2", "TR-9")
    other_sku = ScheduledReceipt("p1", "B", 5 * H, 1)
    book = PlanBook(receipts=(late, early, same_time, at_w2, other_sku, unreferenced))
    assert book.receipts_for("p1", "A") == [early, same_time, unreferenced, late]
    assert book.receipts_for("p1", "A", "W2") == [at_w2]
    assert book.receipts_for("p1", "A", "W9") == [early, same_time, unreferenced, late]
    assert book.receipts_for("p1", "A", after_ms=10 * H) == [late]  # due strictly after
    assert book.receipts_for("p1", "A", after_ms=10 * H - 1) == [early, same_time,
                                                                 unreferenced, late]  # fmt: skip
    assert book.receipts_for("p1", "A", "W2", after_ms=20 * H) == []
    assert book.receipts_for("p1", "A", after_ms=0) == book.receipts_for("p1", "A")
    assert book.receipts_for("p2", "A") == []
    assert PlanBook(receipts=(at_w2,)).receipts_for("p1", "A") == []
    found = book.receipts_for("p1", "B")
    found.clear()  # the caller's list, not the index
    assert book.receipts_for("p1", "B") == [other_sku]


def test_a_receipt_is_validated_by_field() -> None:
    with pytest.raises(PlanError) as info:
        ScheduledReceipt("p/1", "A", MAX_MS + 1, 0, location="", reference="x" * 257)
    assert info.value.fields == ["site", "location", "due_ms", "quantity", "reference"]
    for quantity in (-1, math.inf, math.nan, True, "5"):
        with pytest.raises(PlanError) as info:
            ScheduledReceipt("p1", "A", 0, quantity)  # type: ignore[arg-type]
        assert info.value.fields == ["quantity"]
    for due in (-1, 1.5, None):
        with pytest.raises(PlanError) as info:
            ScheduledReceipt("p1", "A", due, 1)  # type: ignore[arg-type]
        assert info.value.fields == ["due_ms"]
    for reference in ("PO\n1", "\ud800", 42):
        with pytest.raises(PlanError) as info:
            ScheduledReceipt("p1", "A", 0, 1, reference=reference)  # type: ignore[arg-type]
        assert info.value.fields == ["reference"]
    ok = ScheduledReceipt("p1", "A", MAX_MS, 3, reference="Bestellung Nr. 4711 – Müller" * 9)
    assert type(ok.quantity) is float
    assert len(ok.reference) == 252


def test_a_referenced_receipt_is_refused_twice_per_sku_and_location() -> None:
    with pytest.raises(PlanError) as info:
        PlanBook(
            receipts=(
                ScheduledReceipt("p1", "A", 0, 1, reference="PO-1"),
                ScheduledReceipt("p1", "A", 5, 1, "W1", "PO-1"),  # another location: fine
                ScheduledReceipt("p1", "B", 5, 1, reference="PO-1"),  # another SKU: fine
                ScheduledReceipt("p1", "A", 9, 2, reference="PO-1"),
                ScheduledReceipt("p1", "A", 9, 2),
                ScheduledReceipt("p1", "A", 9, 2),
            )
        )
    assert info.value.fields == ["receipts[3]"]
    with pytest.raises(PlanError) as info:
        PlanBook(receipts=(DemandTarget("p1", "A", 0, 1, 1),))  # type: ignore[arg-type]
    assert info.value.fields == ["receipts[0]"]


def test_duplicates_and_overlaps_are_refused_with_their_positions() -> None:
    with pytest.raises(PlanError) as info:
        PlanBook(
            skus=(SkuPolicy("p1", "A"), SkuPolicy("p1", "A", "W1"), SkuPolicy("p1", "A")),
            production=(
                ProductionTarget("p1", "L1", 0, 10, 1),
                ProductionTarget("p1", "L1", 5, 15, 1, sku="A"),  # another SKU: fine
                ProductionTarget("p1", "L1", 9, 20, 1),
            ),
            demand=(DemandTarget("p1", "A", 0, 10, 1), DemandTarget("p1", "A", 10, 20, 1)),
        )
    assert info.value.fields == ["skus[2]", "production[2].start_ms"]


def test_numbers_are_stored_as_floats_and_lists_as_tuples() -> None:
    book = PlanBook(skus=[SkuPolicy("p1", "A", lead_time_h=4)])  # type: ignore[arg-type]
    assert isinstance(book.skus, tuple)
    assert type(book.skus[0].lead_time_h) is float
    assert book == PlanBook(skus=(SkuPolicy("p1", "A", lead_time_h=4.0),))
    with pytest.raises(PlanError) as info:
        PlanBook(skus=(DemandTarget("p1", "A", 0, 1, 1),))  # type: ignore[arg-type]
    assert info.value.fields == ["skus[0]"]


# -- lookups agree with a naive scan -----------------------------------------------------------

periods = st.lists(
    st.tuples(st.integers(0, 1000), st.integers(1, 300), st.floats(0, 1e6)), max_size=30
)


@given(periods, st.integers(-10, 1400))
def test_production_at_is_every_period_containing_now(
    raw: list[tuple[int, int, float]], now: int
) -> None:
    # Overlaps are allowed across SKUs: give each target its own SKU.
    targets = tuple(
        ProductionTarget("p1", "L1", s, s + d, q, sku=f"S{i}") for i, (s, d, q) in enumerate(raw)
    )
    book = PlanBook(production=targets)
    expected = sorted(
        (t for t in targets if t.start_ms <= now < t.end_ms), key=lambda t: (t.start_ms, t.end_ms)
    )
    assert book.production_at("p1", "L1", now) == expected


@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(1, 50), st.floats(0, 1e6)), max_size=20),
    st.integers(-100, 2500),
    st.integers(-100, 2500),
)
def test_demand_between_is_the_pro_rata_sum(
    raw: list[tuple[int, int, float]], start: int, end: int
) -> None:
    targets, t = [], 0
    for gap, length, quantity in raw:  # back to back or with gaps, never overlapping
        targets.append(DemandTarget("p1", "A", t + gap, t + gap + length, quantity))
        t += gap + length
    book = PlanBook(demand=tuple(targets))
    naive = sum(
        x.quantity * max(0, min(end, x.end_ms) - max(start, x.start_ms)) / (x.end_ms - x.start_ms)
        for x in targets
    )
    assert book.demand_between("p1", "A", start, end) == pytest.approx(naive, rel=1e-9, abs=1e-6)
    inside = [x for x in targets if x.start_ms <= start < x.end_ms]
    assert book.demand_at("p1", "A", start) == (inside[0] if inside else None)


@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.sampled_from([None, "W1"]), st.floats(0.5, 1e6)),
        max_size=30,
    ),
    st.none() | st.integers(-10, 110),
    st.sampled_from([None, "W1", "W2"]),
)
def test_receipts_for_is_a_sorted_filtered_scan(
    raw: list[tuple[int, str | None, float]], after: int | None, location: str | None
) -> None:
    receipts = tuple(ScheduledReceipt("p1", "A", due, q, loc) for due, loc, q in raw)
    book = PlanBook(receipts=receipts)
    has_own = location is not None and any(r.location == location for r in receipts)
    wanted = location if has_own else None
    expected = sorted(
        (r for r in receipts
         if r.location == wanted and (after is None or r.due_ms > after)),
        key=lambda r: r.due_ms,
    )  # fmt: skip
    assert book.receipts_for("p1", "A", location, after_ms=after) == expected
