"""Alert rules over HTTP: PUT replaces them (JSON or a TOML file), stores who did it and tells
the monitor; GET reads them back; an invalid set is refused field by field and changes
nothing; the history says who changed what."""

from __future__ import annotations

import dataclasses

import httpx
from conftest import Api, assert_problem

from cloud_service.alerts.rules import DEFAULT_RULES, Rule, load_rules, parse_rules
from cloud_service.api import ApiSettings, create_api

BODY = {
    "rules": [
        {"id": "stockout", "type": "stockout_risk", "severity": "critical", "for": "10 minutes",
         "scope": {"sites": ["plant-1"]},
         "when": [{"metric": "margin_p10_h", "op": "<", "value": 0, "deadband": 2}]},
        {"id": "stuck", "type": "sensor_stuck"},
    ]
}  # fmt: skip


async def test_put_then_get_round_trips_and_notifies(api: Api) -> None:
    empty = await api.client.get("/api/v1/rules", headers=api.auth())
    assert empty.json() == {"rules": []}
    put = await api.client.put("/api/v1/rules", json=BODY, headers=api.writer)
    assert put.status_code == 200, put.text
    assert put.json() == {"rules": 2}
    (rules,) = api.rules_changed
    assert [r.id for r in rules] == ["stockout", "stuck"]
    assert rules[0].on_delay_s == 600
    assert api.deps.rules is not None
    assert await api.deps.rules.load() == rules
    got = (await api.client.get("/api/v1/rules", headers=api.auth())).json()
    assert (got["rules"][0]["for"], got["rules"][0]["scope"]["sites"]) == (600, ["plant-1"])
    assert [Rule.model_validate(r) for r in got["rules"]] == rules
    as_toml = await api.client.get(
        "/api/v1/rules", headers={**api.auth(), "Accept": "application/toml"}
    )
    assert as_toml.headers["content-type"].startswith("application/toml")
    assert parse_rules(as_toml.text) == rules


async def test_a_toml_file_can_be_put_as_is(api: Api) -> None:
    response = await api.client.put(
        "/api/v1/rules", content=DEFAULT_RULES.read_bytes(),
        headers={**api.writer, "Content-Type": "application/toml"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert api.rules_changed == [load_rules()]


async def test_invalid_rules_are_refused_by_field_and_change_nothing(api: Api) -> None:
    await api.client.put("/api/v1/rules", json=BODY, headers=api.writer)
    bad = {"rules": [BODY["rules"][0] | {"severity": "urgent"},
                     {"id": "x", "type": "no_data", "when": [{"metric": "ratio", "op": ">",
                                                              "value": 1}]}]}  # fmt: skip
    body = assert_problem(
        await api.client.put("/api/v1/rules", json=bad, headers=api.writer), 422, "invalid-rules"
    )
    assert [e["field"] for e in body["errors"]] == ["rules.0.severity", "rules.1"]
    assert "no_data has no metric 'ratio'" in body["errors"][1]["message"]
    dup = {"rules": [BODY["rules"][1], BODY["rules"][1]]}
    body = assert_problem(await api.client.put("/api/v1/rules", json=dup, headers=api.writer), 422)
    assert body["errors"] == [{"field": "rules.1.id", "message": "duplicate rule id 'stuck'"}]
    cases = [
        (b"{", "application/json", "(syntax)"),
        (b"[[rules]\n", "application/toml", "(syntax)"),
        (b"{}", "application/json", "rules"),  # an empty body must not delete every rule
        (b"", "application/toml", "rules"),
    ]
    for content, kind, field in cases:
        response = await api.client.put(
            "/api/v1/rules", content=content, headers={**api.writer, "Content-Type": kind}
        )
        errors = assert_problem(response, 422, "invalid-rules")["errors"]
        assert [e["field"] for e in errors] == [field], content
    assert api.deps.rules is not None
    assert [r.id for r in await api.deps.rules.load()] == ["stockout", "stuck"]
    assert len(api.rules_changed) == 1
    history = await api.client.get("/api/v1/rules/history", headers=api.auth())
    assert len(history.json()["changes"]) == 1


async def test_an_empty_list_removes_every_rule(api: Api) -> None:
    await api.client.put("/api/v1/rules", json=BODY, headers=api.writer)
    response = await api.client.put("/api/v1/rules", json={"rules": []}, headers=api.writer)
    assert response.json() == {"rules": 0}
    assert api.rules_changed[-1] == []
    assert (await api.client.get("/api/v1/rules", headers=api.auth())).json() == {"rules": []}


async def test_the_history_says_who_changed_what(api: Api) -> None:
    await api.client.put("/api/v1/rules", json=BODY, headers=api.writer)
    api.clock[0] += 60_000
    changed = {"rules": [BODY["rules"][1] | {"severity": "critical"},
                         {"id": "offline", "type": "gateway_offline"}]}  # fmt: skip
    await api.client.put("/api/v1/rules", json=changed, headers=api.writer)
    response = await api.client.get("/api/v1/rules/history", headers=api.auth())
    assert response.status_code == 200, response.text
    latest, first = response.json()["changes"]
    assert (latest["actor"], latest["added"], latest["removed"], latest["changed"]) == (
        "api:ops", ["offline"], ["stockout"], ["stuck"],
    )  # fmt: skip
    assert latest["at"].startswith("2026-09-21T14:14:20")
    assert [r["id"] for r in latest["before"]] == ["stockout", "stuck"]
    assert latest["after"][0]["severity"] == "critical"
    assert (first["added"], first["before"]) == (["stockout", "stuck"], [])
    limited = await api.client.get("/api/v1/rules/history?limit=1", headers=api.auth())
    assert [c["id"] for c in limited.json()["changes"]] == [latest["id"]]
    assert_problem(await api.client.get("/api/v1/rules/history?limit=0", headers=api.auth()), 422)


async def test_only_an_admin_key_may_replace_the_rules(api: Api) -> None:
    assert_problem(await api.client.put("/api/v1/rules", json=BODY, headers=api.auth()), 403)
    body = assert_problem(
        await api.client.put("/api/v1/rules", json=BODY, headers=api.acker), 403, "forbidden"
    )
    assert "'admin'" in body["detail"]
    assert_problem(await api.client.put("/api/v1/rules", json=BODY), 401)
    assert_problem(await api.client.get("/api/v1/rules"), 401)
    assert_problem(await api.client.get("/api/v1/rules/history"), 401)
    assert api.rules_changed == []
    assert api.deps.rules is not None
    assert await api.deps.rules.history() == []


async def test_a_failing_listener_does_not_undo_the_stored_rules(api: Api) -> None:
    def broken(_: list[Rule]) -> None:
        raise RuntimeError("monitor not ready")

    app = create_api(dataclasses.replace(api.deps, on_rules_changed=broken), ApiSettings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://flightdeck"
    ) as client:
        response = await client.put("/api/v1/rules", json=BODY, headers=api.writer)
    assert response.status_code == 200
    assert api.deps.rules is not None
    assert len(await api.deps.rules.load()) == 2


async def test_without_a_rule_store_there_are_no_rule_endpoints(api: Api) -> None:
    app = create_api(dataclasses.replace(api.deps, rules=None), ApiSettings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://flightdeck"
    ) as client:
        assert_problem(await client.get("/api/v1/rules", headers=api.auth()), 404)
        paths = (await client.get("/api/v1/openapi.json")).json()["paths"]
    assert not any(p.startswith("/api/v1/rules") for p in paths)
