"""The plan book over HTTP: PUT replaces it (JSON or TOML) and tells the analytics; GET reads
it back; an invalid book is refused field by field and changes nothing."""

from __future__ import annotations

import json

import httpx
from conftest import Api, assert_problem

from cloud_service.api import ApiSettings, create_api
from cloud_service.plans import PlanBook
from cloud_service.plans.codec import parse_plan_json, parse_plan_toml, plan_to_toml

BODY = {
    "skus": [
        {"site": "plant-1", "sku": "A-113", "lead_time_h": 48, "safety_stock": 200},
        {"site": "plant-1", "sku": "A-113", "location": "W2", "service_level": 0.99},
    ],
    "production": [
        {"site": "plant-1", "line": "L1", "start": "2025-06-02T06:00:00Z",
         "end": "2025-06-02T14:00:00Z", "quantity": 1200, "sku": "A-113"},
    ],
    "demand": [
        {"site": "plant-1", "sku": "A-113", "start_ms": 1748822400000,
         "end_ms": 1748908800000, "quantity": 900},
    ],
}  # fmt: skip


async def test_put_then_get_round_trips_and_notifies(api: Api) -> None:
    empty = await api.client.get("/api/v1/plans", headers=api.auth())
    assert parse_plan_json(empty.content) == PlanBook()
    put = await api.client.put("/api/v1/plans", json=BODY, headers=api.writer)
    assert put.status_code == 200, put.text
    assert put.json() == {"skus": 2, "production": 1, "demand": 1, "receipts": 0}
    (book,) = api.changed
    assert book.policy("plant-1", "A-113", "W2") is not None
    assert book.policy("plant-1", "A-113", "W2").service_level == 0.99  # type: ignore[union-attr]
    got = await api.client.get("/api/v1/plans", headers=api.auth())
    assert got.headers["content-type"] == "application/json"
    assert parse_plan_json(got.content) == book
    as_toml = await api.client.get(
        "/api/v1/plans", headers={**api.auth(), "Accept": "application/toml"}
    )
    assert as_toml.headers["content-type"].startswith("application/toml")
    assert parse_plan_toml(as_toml.text) == book
    assert await api.deps.plans.load() == book


async def test_scheduled_receipts_travel_through_put_and_get(api: Api) -> None:
    receipts = [
        {"site": "plant-1", "sku": "A-113", "location": "W2", "due": "2025-06-04T08:00:00Z",
         "quantity": 2400, "reference": "PO-4711"},
        {"site": "plant-1", "sku": "A-113", "due_ms": 1748944800000, "quantity": 500},
    ]  # fmt: skip
    put = await api.client.put(
        "/api/v1/plans", json={**BODY, "receipts": receipts}, headers=api.writer
    )
    assert put.status_code == 200, put.text
    (book,) = api.changed
    (at_w2,) = book.receipts_for("plant-1", "A-113", "W2")
    assert (at_w2.due_ms, at_w2.quantity, at_w2.reference) == (1749024000000, 2400.0, "PO-4711")
    assert [r.due_ms for r in book.receipts_for("plant-1", "A-113")] == [1748944800000]
    got = (await api.client.get("/api/v1/plans", headers=api.auth())).json()
    assert got["receipts"] == [
        {"site": "plant-1", "sku": "A-113", "location": "W2", "due": "2025-06-04T08:00:00.000Z",
         "quantity": 2400.0, "reference": "PO-4711"},
        {"site": "plant-1", "sku": "A-113", "due": "2025-06-03T10:00:00.000Z", "quantity": 500.0},
    ]  # fmt: skip
    as_toml = await api.client.get(
        "/api/v1/plans", headers={**api.auth(), "Accept": "application/toml"}
    )
    assert "[[receipts]]" in as_toml.text
    assert parse_plan_toml(as_toml.text) == book == await api.deps.plans.load()
    twice = [*receipts, {**receipts[0], "due": "2025-06-05T08:00:00Z"}]
    body = assert_problem(
        await api.client.put("/api/v1/plans", json={**BODY, "receipts": twice}, headers=api.writer),
        422,
        "invalid-plan",
    )
    assert [e["field"] for e in body["errors"]] == ["receipts[2]"]
    assert await api.deps.plans.load() == book


async def test_a_toml_file_can_be_put_as_is(api: Api) -> None:
    text = 'timezone = "Europe/Berlin"\n' + plan_to_toml(parse_plan_json(json.dumps(BODY)))
    response = await api.client.put(
        "/api/v1/plans", content=text.encode(),
        headers={**api.writer, "Content-Type": "application/toml"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert api.changed == [parse_plan_toml(text)]


async def test_an_invalid_book_is_refused_by_field_and_changes_nothing(api: Api) -> None:
    await api.client.put("/api/v1/plans", json=BODY, headers=api.writer)
    before = await api.deps.plans.load()
    bad = {**BODY, "demand": [{"site": "plant 1", "sku": "A", "start": 5, "end": 1,
                               "quantity": 1}], "extra": []}  # fmt: skip
    body = assert_problem(
        await api.client.put("/api/v1/plans", json=bad, headers=api.writer), 422, "invalid-plan"
    )
    fields = [e["field"] for e in body["errors"]]
    assert fields == ["extra", "demand[0].site", "demand[0].end_ms"]
    syntax = await api.client.put("/api/v1/plans", content=b"{", headers=api.writer)
    assert_problem(syntax, 422, "invalid-plan")
    assert await api.deps.plans.load() == before
    assert len(api.changed) == 1


async def test_only_an_admin_key_may_replace_the_book(api: Api) -> None:
    assert_problem(await api.client.put("/api/v1/plans", json=BODY, headers=api.auth()), 403)
    assert_problem(await api.client.put("/api/v1/plans", json=BODY, headers=api.acker), 403)
    assert_problem(await api.client.put("/api/v1/plans", json=BODY), 401)
    assert_problem(await api.client.get("/api/v1/plans"), 401)
    assert api.changed == []


async def test_a_failing_listener_does_not_undo_the_stored_book(api: Api) -> None:
    def broken(_: PlanBook) -> None:
        raise RuntimeError("analytics not ready")

    api.deps.on_plans_changed = broken  # read when the app was built: rebuild it
    app = create_api(api.deps, ApiSettings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://flightdeck"
    ) as client:
        response = await client.put("/api/v1/plans", json=BODY, headers=api.writer)
    assert response.status_code == 200
    assert len((await api.deps.plans.load()).skus) == 2
