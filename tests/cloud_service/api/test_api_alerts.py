"""Alerts over HTTP: list and filter, acknowledge, shelve, unshelve; every change lands in
the alert log with the key's name as the actor, errors come back as problem details."""

from __future__ import annotations

from conftest import NOW, Api, assert_problem, condition

from shared.messages import Severity


async def test_open_alerts_are_listed_and_filtered(api: Api) -> None:
    a = await api.raise_alert("lc7", severity=Severity.CRITICAL)
    api.clock[0] += 1000
    b = await api.raise_alert("lc8", site="s2")

    async def ids(**params: str) -> list[str]:
        response = await api.client.get("/api/v1/alerts", params=params, headers=api.auth())
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == len(body["alerts"])
        return [x["id"] for x in body["alerts"]]

    assert await ids() == [b.alert.id, a.alert.id]  # newest first
    assert await ids(site="s1") == [a.alert.id]
    assert await ids(severity="critical") == [a.alert.id]
    assert await ids(state="active", acked="false") == [b.alert.id, a.alert.id]
    assert await ids(state="cleared") == []
    assert await ids(acked="true") == []
    assert_problem(
        await api.client.get("/api/v1/alerts?severity=loud", headers=api.auth()), 422,
        "invalid-request",
    )  # fmt: skip


async def test_one_alert_is_read_by_id_and_an_unknown_one_is_404(api: Api) -> None:
    event = await api.raise_alert()
    response = await api.client.get(f"/api/v1/alerts/{event.alert.id}", headers=api.auth())
    assert response.json() == event.alert.as_json()
    assert_problem(await api.client.get("/api/v1/alerts/nope", headers=api.auth()), 404)
    assert_problem(await api.client.get("/api/v1/alerts/nope/events", headers=api.auth()), 404)


async def test_acknowledging_records_who_and_why(api: Api) -> None:
    event = await api.raise_alert()
    alert_id = event.alert.id
    api.clock[0] = NOW + 60_000
    response = await api.client.post(
        f"/api/v1/alerts/{alert_id}/ack", json={"comment": "truck on its way"}, headers=api.acker
    )
    assert response.status_code == 200
    body = response.json()
    assert body["events"] == ["alert.acked"]
    assert body["alert"]["acked"] is True
    assert body["alert"]["acked_by"] == "api:operator"
    (open_alert,) = api.service.open_alerts()
    assert open_alert.acked
    assert open_alert.acked_by == "api:operator"
    events = (await api.client.get(f"/api/v1/alerts/{alert_id}/events", headers=api.auth())).json()
    assert events["alert_id"] == alert_id
    assert [e["type"] for e in events["events"]] == ["alert.raised", "alert.acked"]
    acked = events["events"][-1]
    assert (acked["type"], acked["actor"], acked["reason"]) == (
        "alert.acked", "api:operator", "truck on its way",
    )  # fmt: skip
    assert acked["at"] == "2026-09-21T14:14:20.000+00:00"
    again = await api.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=api.acker)
    assert again.json()["events"] == []  # idempotent


async def test_an_alert_closed_by_its_ack_stays_readable(api: Api) -> None:
    event = await api.raise_alert()
    api.clock[0] += 1000
    await api.service.observe([condition(raise_met=False)], api.clock[0])
    (cleared,) = api.service.open_alerts()
    assert cleared.state == "cleared"
    response = await api.client.post(f"/api/v1/alerts/{event.alert.id}/ack", headers=api.acker)
    assert response.json()["events"] == ["alert.acked", "alert.closed"]
    assert api.service.open_alerts() == []
    listed = await api.client.get("/api/v1/alerts", headers=api.auth())
    assert listed.json()["count"] == 0
    closed = await api.client.get(f"/api/v1/alerts/{event.alert.id}", headers=api.auth())
    assert closed.status_code == 200
    assert (closed.json()["state"], closed.json()["acked"]) == ("cleared", True)


async def test_acknowledging_an_unknown_alert_is_404(api: Api) -> None:
    body = assert_problem(
        await api.client.post("/api/v1/alerts/nope/ack", headers=api.acker), 404, "unknown-alert"
    )
    assert body["alert_id"] == "nope"


async def test_shelving_is_time_limited_and_undone_by_unshelving(api: Api) -> None:
    event = await api.raise_alert()
    url = f"/api/v1/alerts/{event.alert.id}"
    shelved = await api.client.post(
        f"{url}/shelve", json={"minutes": 30, "reason": "maintenance"}, headers=api.acker
    )
    assert shelved.status_code == 200, shelved.text
    assert shelved.json()["events"] == ["alert.shelved"]
    assert shelved.json()["alert"]["shelved_until"] == "2026-09-21T14:43:20.000+00:00"
    too_long = await api.client.post(f"{url}/shelve", json={"minutes": 9 * 60}, headers=api.acker)
    assert_problem(too_long, 422, "invalid-shelving")
    for bad in ({"minutes": 0}, {"minutes": "soon"}, {}, {"minutes": 5, "extra": 1}):
        assert_problem(await api.client.post(f"{url}/shelve", json=bad, headers=api.acker), 422)
    unshelved = await api.client.post(f"{url}/unshelve", headers=api.acker)
    assert unshelved.json()["events"] == ["alert.unshelved"]
    assert unshelved.json()["alert"]["shelved_until"] is None
    log = (await api.client.get(f"{url}/events", headers=api.auth())).json()["events"]
    assert [(e["type"], e["actor"], e["reason"]) for e in log[1:]] == [
        ("alert.shelved", "api:operator", "maintenance"),
        ("alert.unshelved", "api:operator", "unshelved via API"),
    ]
    assert_problem(await api.client.post("/api/v1/alerts/x/unshelve", headers=api.acker), 404)
