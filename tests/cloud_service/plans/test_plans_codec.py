"""Plan files and bodies: every accepted time form, the recurring shifts, errors by path, and
round trips PlanBook -> TOML/JSON -> PlanBook for any valid book (hypothesis)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_service.plans import (
    DemandTarget,
    PlanBook,
    PlanError,
    ProductionTarget,
    ScheduledReceipt,
    SkuPolicy,
)
from cloud_service.plans.codec import (
    load_plan,
    parse_plan_json,
    parse_plan_toml,
    plan_from_data,
    plan_to_json,
    plan_to_toml,
)
from cloud_service.plans.model import MAX_MS

BERLIN = ZoneInfo("Europe/Berlin")


def ms(*args: int, tz: ZoneInfo | None = None) -> int:
    return int(datetime(*args, tzinfo=tz or UTC).timestamp() * 1000)  # type: ignore[misc]


EXAMPLE = """
timezone = "Europe/Berlin"

[[skus]]
site = "plant-1"
sku = "A-113"
location = "W2"
lead_time_h = 48
safety_stock = 200
service_level = 0.98

[[production]]
site = "plant-1"
line = "L1"
sku = "A-113"
start = 2025-06-02T06:00:00         # TOML local time: in the plan's timezone
end = "2025-06-02T14:00:00+02:00"   # ISO-8601 with an offset
quantity = 1200

[[demand]]
site = "plant-1"
sku = "A-113"
location = "W2"
start = 2025-06-02                  # a date: midnight in the plan's timezone
end_ms = 1748901600000              # epoch ms (2025-06-03T00:00+02:00)
quantity = 900

[[receipts]]
site = "plant-1"
sku = "A-113"
location = "W2"
due = 2025-06-04T10:00:00           # in the plan's timezone, like every time
quantity = 2400
reference = "PO-4711"

[[receipts]]
site = "plant-1"
sku = "A-113"
due_ms = 1748944800000              # epoch ms (2025-06-03T12:00+02:00)
quantity = 500
"""


def test_the_documented_example_reads_every_time_form() -> None:
    book = parse_plan_toml(EXAMPLE)
    assert book.skus == (
        SkuPolicy("plant-1", "A-113", "W2", lead_time_h=48, safety_stock=200, service_level=0.98),
    )
    assert book.production == (
        ProductionTarget("plant-1", "L1", ms(2025, 6, 2, 6, tz=BERLIN),
                         ms(2025, 6, 2, 14, tz=BERLIN), 1200, sku="A-113"),
    )  # fmt: skip
    (demand,) = book.demand
    assert (demand.start_ms, demand.end_ms) == (ms(2025, 6, 2, tz=BERLIN), 1748901600000)
    assert book.demand_between("plant-1", "A-113", demand.start_ms, demand.end_ms, "W2") == 900
    assert book.receipts == (
        ScheduledReceipt("plant-1", "A-113", ms(2025, 6, 4, 10, tz=BERLIN), 2400, "W2", "PO-4711"),
        ScheduledReceipt("plant-1", "A-113", ms(2025, 6, 3, 12, tz=BERLIN), 500),
    )
    assert book.receipts_for("plant-1", "A-113", "W2") == [book.receipts[0]]
    assert book.receipts_for("plant-1", "A-113", "W7") == [book.receipts[1]]


def test_shifts_expand_in_local_time_across_a_daylight_saving_change() -> None:
    book = parse_plan_toml("""
        timezone = "Europe/Berlin"
        [[shifts]]
        site = "p1"
        line = "L1"
        quantity = 100
        from = 2025-03-28          # a Friday; summer time starts Sunday 30 March, 02:00
        days = 4
        weekdays = ["fri", "sun", "mon"]
        times = ["06:00-14:00", "22:00-06:00"]
    """)
    starts = [datetime.fromtimestamp(t.start_ms / 1000, BERLIN) for t in book.production]
    assert [(s.day, s.hour) for s in starts] == [(28, 6), (28, 22), (30, 6), (30, 22), (31, 6),
                                                 (31, 22)]  # fmt: skip
    hours = [(t.end_ms - t.start_ms) / 3_600_000 for t in book.production]
    assert hours == [8, 8, 8, 8, 8, 8]
    assert all(t.quantity == 100 and t.period == "shift" for t in book.production)
    night_before_change = parse_plan_toml("""
        timezone = "Europe/Berlin"
        [[shifts]]
        site = "p1"
        line = "L1"
        quantity = 1
        from = "2025-03-29"
        times = ["22:00-06:00"]
    """).production[0]
    assert night_before_change.end_ms - night_before_change.start_ms == 7 * 3_600_000


def test_every_problem_of_the_input_is_reported_with_its_path() -> None:
    with pytest.raises(PlanError) as info:
        parse_plan_toml("""
            timezone = "Mars/Olympus"
            typo = 1
            [[skus]]
            site = "p1"
            leadtime_h = 4
            [[production]]
            site = "p1"
            line = "L1"
            start = "yesterday"
            start_ms = 5
            quantity = 1
            [[demand]]
            site = "p1"
            sku = "A"
            start = 10:00:00
            end = 5
            quantity = 1
            [[shifts]]
            site = "p1"
            line = "L1"
            quantity = 1
            from = "monday"
            times = ["6-14"]
            weekdays = ["caturday"]
        """)
    assert info.value.fields == [
        "typo", "timezone", "skus[0].leadtime_h", "skus[0].sku",
        "production[0].start", "production[0].end", "demand[0].start",
        "shifts[0].from", "shifts[0].weekdays[0]", "shifts[0].times[0]",
    ]  # fmt: skip


def test_receipt_problems_are_reported_with_their_paths() -> None:
    with pytest.raises(PlanError) as info:
        plan_from_data({"receipts": [
            {"site": "p1", "due": "soon", "quantity": 1, "po": "x"},
            {"site": "p1", "sku": "A", "due": 5, "due_ms": 5, "quantity": 1},
            {"site": "p1", "sku": "A", "quantity": 1},
        ]})  # fmt: skip
    assert info.value.fields == [
        "receipts[0].po", "receipts[0].sku", "receipts[0].due",
        "receipts[1].due", "receipts[2].due",
    ]  # fmt: skip
    with pytest.raises(PlanError) as info:
        plan_from_data({"receipts": [
            {"site": "p1", "sku": "A", "due": "2025-06-02", "quantity": 0, "reference": 7},
            {"site": "p1", "sku": "A", "due_ms": 1, "quantity": 1, "reference": "PO-1"},
            {"site": "p1", "sku": "A", "due_ms": 2, "quantity": 1, "reference": "PO-1"},
        ]})  # fmt: skip
    assert info.value.fields == ["receipts[0].quantity", "receipts[0].reference"]
    with pytest.raises(PlanError) as info:
        plan_from_data({"receipts": [
            {"site": "p1", "sku": "A", "due_ms": 1, "quantity": 1, "reference": "PO-1"},
            {"site": "p1", "sku": "A", "due_ms": 2, "quantity": 1, "reference": "PO-1"},
        ]})  # fmt: skip
    assert info.value.fields == ["receipts[1]"]


def test_an_empty_reference_is_not_written_and_reads_back_empty() -> None:
    quoted = 'say "x" \\ y'
    book = PlanBook(
        receipts=(
            ScheduledReceipt("p1", "A", 0, 1),
            ScheduledReceipt("p1", "A", 1, 2, None, quoted),
        )
    )
    rows = json.loads(plan_to_json(book))["receipts"]
    assert rows == [
        {"site": "p1", "sku": "A", "due": "1970-01-01T00:00:00.000Z", "quantity": 1.0},
        {"site": "p1", "sku": "A", "due": "1970-01-01T00:00:00.001Z", "quantity": 2.0,
         "reference": quoted},
    ]  # fmt: skip
    assert parse_plan_toml(plan_to_toml(book)) == book
    assert parse_plan_json('{"receipts": [{"site": "p1", "sku": "A", "due_ms": 0, "quantity": 1,'
                           ' "reference": null, "location": null}]}') == PlanBook(
        receipts=(book.receipts[0],)
    )  # fmt: skip


def test_values_are_checked_once_the_shape_is_right() -> None:
    with pytest.raises(PlanError) as info:
        plan_from_data({
            "skus": [{"site": "p1", "sku": "A", "service_level": 1.5}],
            "demand": [{"site": "p1", "sku": "A", "start": 10, "end": 5, "quantity": -1},
                       {"site": "p1", "sku": "A", "start": 0, "end": 50, "quantity": 1},
                       {"site": "p1", "sku": "A", "start": 40, "end": 60, "quantity": 1}],
        })  # fmt: skip
    assert info.value.fields == ["skus[0].service_level", "demand[0].end_ms", "demand[0].quantity"]
    with pytest.raises(PlanError) as info:
        plan_from_data({"demand": [{"site": "p1", "sku": "A", "start": 0, "end": 50, "quantity": 1},
                                   {"site": "p1", "sku": "A", "start": 40, "end": 60,
                                    "quantity": 1}]})  # fmt: skip
    assert info.value.fields == ["demand[1].start_ms"]


@pytest.mark.parametrize(
    ("text", "field"),
    [("[1, 2]", "(root)"), ('{"skus": {}}', "skus"), ('{"skus": [3]}', "skus[0]"),
     ("{nope", "(syntax)"), (b"\xff", "(syntax)")],
)  # fmt: skip
def test_malformed_json_is_a_plan_error(text: str | bytes, field: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan_json(text)
    assert info.value.fields == [field]


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("parse", "text", "field"),
    [
        (parse_plan_json, '{"skus": ' + DEEP + "}", "(syntax)"),
        (parse_plan_toml, "skus = " + DEEP, "(syntax)"),
        (parse_plan_json, '{"timezone": "Europe"}', "timezone"),  # a directory of the tz data
        (parse_plan_json, '{"timezone": "America"}', "timezone"),
        (parse_plan_json, '{"timezone": "' + "a" * 5000 + '"}', "timezone"),  # name too long
        (parse_plan_toml, 'timezone = "Europe/"', "timezone"),
    ],
)
def test_unusable_input_is_a_plan_error_not_a_crash(
    parse: Callable[[str], PlanBook], text: str, field: str
) -> None:
    with pytest.raises(PlanError) as info:
        parse(text)
    assert info.value.fields == [field]


def shift_from(first: str, times: list[str], days: int = 1) -> dict[str, list[dict[str, object]]]:
    item: dict[str, object] = {
        "site": "p1",
        "line": "L1",
        "quantity": 1,
        "from": first,
        "times": times,
    }
    return {"shifts": [{**item, "days": days}]}


@pytest.mark.parametrize(
    "data",
    [
        shift_from("9999-12-31", ["06:00-14:00"], days=2),
        shift_from("9999-12-31", ["22:00-06:00"]),  # ends on a day the calendar lacks
        shift_from("9999-12-01", ["06:00-14:00"], days=400),
    ],
)
def test_shifts_past_the_end_of_the_calendar_are_a_plan_error(
    data: dict[str, list[dict[str, object]]],
) -> None:
    with pytest.raises(PlanError) as info:
        plan_from_data(data)
    assert info.value.fields == ["shifts[0].from"]


def test_shifts_up_to_the_end_of_the_calendar_are_fine() -> None:
    overnight = shift_from("9999-12-30", ["22:00-06:00"])["shifts"]
    last_day = shift_from("9999-12-31", ["06:00-14:00"])["shifts"]
    book = plan_from_data({"shifts": [*overnight, *last_day]})
    assert [t.end_ms for t in book.production] == [ms(9999, 12, 31, 6), ms(9999, 12, 31, 14)]
    assert parse_plan_json(plan_to_json(book)) == book


def test_json_null_means_absent_for_optional_fields() -> None:
    book = parse_plan_json(
        '{"skus": [{"site": "p1", "sku": "A", "location": null}],'
        ' "production": [{"site": "p1", "line": "L1", "start_ms": 0, "end_ms": 10,'
        ' "quantity": 1, "sku": null}]}'
    )
    assert book.skus[0].location is None
    assert book.production[0].sku is None


def test_files_are_read_by_suffix_and_unreadable_ones_are_plan_errors(tmp_path: Path) -> None:
    book = parse_plan_toml(EXAMPLE)
    (tmp_path / "plan.json").write_text(plan_to_json(book))
    (tmp_path / "plan.toml").write_text(plan_to_toml(book))
    assert load_plan(tmp_path / "plan.json") == book == load_plan(tmp_path / "plan.toml")
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "missing.toml")
    assert info.value.fields == ["(file)"]


# -- round trips -------------------------------------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,12}", fullmatch=True)
amounts = st.floats(min_value=0, allow_nan=False, allow_infinity=False)


@st.composite
def spans(draw: st.DrawFn) -> tuple[int, int]:
    start = draw(st.integers(0, MAX_MS - 1))
    return start, draw(st.integers(start + 1, MAX_MS))


policies = st.builds(
    SkuPolicy, site=ids, sku=ids, location=st.none() | ids, lead_time_h=amounts,
    safety_stock=amounts, review_h=amounts,
    service_level=st.floats(0, 1, exclude_min=True, exclude_max=True),
)  # fmt: skip
production = st.builds(
    lambda site, line, span, q, sku, period: ProductionTarget(site, line, *span, q, sku, period),
    ids, ids, spans(), amounts, st.none() | ids, ids,
)  # fmt: skip
demand = st.builds(
    lambda site, sku, span, q, location: DemandTarget(site, sku, *span, q, location),
    ids, ids, spans(), amounts, st.none() | ids,
)  # fmt: skip
# Free text a receipt accepts: anything but control characters and lone surrogates.
references = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=256)
receipts = st.builds(
    ScheduledReceipt, site=ids, sku=ids, due_ms=st.integers(0, MAX_MS),
    quantity=st.floats(min_value=0, exclude_min=True, allow_nan=False, allow_infinity=False),
    location=st.none() | ids, reference=references,
)  # fmt: skip
books = st.builds(
    lambda s, p, d, r: PlanBook(tuple(s), tuple(p), tuple(d), tuple(r)),
    st.lists(policies, max_size=5, unique_by=lambda x: (x.site, x.sku, x.location)),
    st.lists(production, max_size=5, unique_by=lambda x: (x.site, x.line, x.sku)),
    st.lists(demand, max_size=5, unique_by=lambda x: (x.site, x.sku, x.location)),
    # Receipts without a reference may repeat; referenced ones are unique per SKU and location.
    st.lists(receipts, max_size=6, unique_by=lambda x: (x.site, x.sku, x.location,
                                                        x.reference or object())),
)  # fmt: skip


@settings(max_examples=200)
@given(books)
def test_toml_round_trip(book: PlanBook) -> None:
    assert parse_plan_toml(plan_to_toml(book)) == book


@settings(max_examples=200)
@given(books)
def test_json_round_trip(book: PlanBook) -> None:
    text = plan_to_json(book)
    assert parse_plan_json(text) == book
    assert parse_plan_json(text.encode()) == book


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=12,
)  # fmt: skip
fields = st.sampled_from(
    ["site", "sku", "line", "location", "start", "end", "start_ms", "end_ms", "quantity",
     "lead_time_h", "service_level", "period", "from", "times", "days", "due", "due_ms",
     "reference", "x"]
)  # fmt: skip
almost = st.dictionaries(
    st.sampled_from(["skus", "production", "demand", "receipts", "shifts", "timezone"]),
    st.lists(st.dictionaries(fields, json_values, max_size=8), max_size=3) | json_values,
)


@settings(max_examples=300)
@given(almost | json_values)
def test_any_input_gives_a_book_or_a_plan_error(data: object) -> None:
    try:
        book = plan_from_data(data)
    except PlanError as exc:
        assert exc.problems
        assert all(isinstance(p, str) for p, _ in exc.problems)
    else:
        assert parse_plan_json(json.dumps(json.loads(plan_to_json(book)))) == book
