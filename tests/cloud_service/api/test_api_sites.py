"""Scopes (read < ack < admin) and keys restricted to sites: a key sees and acts on its sites'
alerts only, and another site's alert is answered exactly as one that does not exist."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import Api, assert_problem, condition

from cloud_service.api import ApiKeyError, Scope, SqlApiKeyStore
from cloud_service.metadata import MetadataStore
from cloud_service.plans.codec import parse_plan_json

PLAN = {
    "skus": [
        {"site": "plant-1", "sku": "A-113", "lead_time_h": 48},
        {"site": "plant-2", "sku": "B-7", "lead_time_h": 12},
    ],
    "demand": [
        {"site": "plant-1", "sku": "A-113", "start_ms": 1748822400000,
         "end_ms": 1748908800000, "quantity": 900},
        {"site": "plant-2", "sku": "B-7", "start_ms": 1748822400000,
         "end_ms": 1748908800000, "quantity": 5},
    ],
}  # fmt: skip


def test_each_scope_allows_the_ones_before_it() -> None:
    assert [s.value for s in sorted(Scope, key=lambda s: s.rank)] == ["read", "ack", "admin"]
    for held in Scope:
        for needed in Scope:
            assert held.allows(needed) == (held.rank >= needed.rank)
    assert not Scope.READ.allows(Scope.ACK)
    assert not Scope.ACK.allows(Scope.ADMIN)
    assert Scope.ADMIN.allows(Scope.READ)


async def test_sites_are_stored_and_checked_when_a_key_is_created(metadata: MetadataStore) -> None:
    keys = SqlApiKeyStore(metadata.engine)
    key, token = await keys.create("plant1-ops", "ack", ["plant-1", "plant-3", "plant-1"])
    assert key.sites == {"plant-1", "plant-3"}
    verified = await keys.verify(token)
    assert verified is not None
    assert (verified.scope, verified.sites) == (Scope.ACK, frozenset({"plant-1", "plant-3"}))
    _, every = await keys.create("wall", "read")
    assert (await keys.verify(every)) is not None
    assert {k.name: k.sites for k in await keys.list()} == {
        "plant1-ops": {"plant-1", "plant-3"}, "wall": frozenset(),
    }  # fmt: skip
    with pytest.raises(ApiKeyError, match="unknown scope 'write'"):
        await keys.create("old", "write")
    with pytest.raises(ApiKeyError, match="every site"):
        await keys.create("boss", Scope.ADMIN, ["plant-1"])
    with pytest.raises(ApiKeyError):
        await keys.create("odd", "read", ["two words"])
    assert [k.name for k in await keys.list()] == ["plant1-ops", "wall"]


async def test_a_site_key_lists_only_its_sites(api: Api) -> None:
    await api.raise_alert("lc7", site="plant-1")
    await api.raise_alert("lc8", site="plant-2")
    await api.raise_alert("lc9", site="plant-3")
    mine = await api.key("plant1", "read", "plant-1", "plant-3")
    listed = (await api.client.get("/api/v1/alerts", headers=mine)).json()
    assert sorted(a["site"] for a in listed["alerts"]) == ["plant-1", "plant-3"]
    assert listed["count"] == 2
    other = await api.client.get("/api/v1/alerts?site=plant-2", headers=mine)
    assert other.json() == {"count": 0, "alerts": []}
    own = await api.client.get("/api/v1/alerts?site=plant-3", headers=mine)
    assert [a["site"] for a in own.json()["alerts"]] == ["plant-3"]
    every = (await api.client.get("/api/v1/alerts", headers=api.auth())).json()
    assert every["count"] == 3


def _same_404(hidden: httpx.Response, missing: httpx.Response, alert_id: str) -> None:
    """Two 404s that differ only by the alert id they name."""
    a, b = assert_problem(hidden, 404), assert_problem(missing, 404)
    expected = {k: v.replace("'nope'", repr(alert_id)) if isinstance(v, str) else v
                for k, v in b.items()}  # fmt: skip
    if "alert_id" in b:
        expected["alert_id"] = alert_id
    assert a == expected


async def test_another_sites_alert_is_not_found_whatever_is_asked(api: Api) -> None:
    theirs = (await api.raise_alert("lc8", site="plant-2")).alert.id
    ours = (await api.raise_alert("lc7", site="plant-1")).alert.id
    key = await api.key("plant1-ops", "ack", "plant-1")
    base = "/api/v1/alerts"
    for path in ("", "/events"):
        _same_404(
            await api.client.get(f"{base}/{theirs}{path}", headers=key),
            await api.client.get(f"{base}/nope{path}", headers=key),
            theirs,
        )
        assert (await api.client.get(f"{base}/{ours}{path}", headers=key)).status_code == 200
        assert (await api.client.get(f"{base}/{theirs}{path}", headers=api.auth())).is_success
    actions: list[tuple[str, dict[str, Any] | None]] = [
        ("ack", None), ("shelve", {"minutes": 30}), ("unshelve", None),
    ]  # fmt: skip
    for action, body in actions:
        hidden = await api.client.post(f"{base}/{theirs}/{action}", json=body, headers=key)
        missing = await api.client.post(f"{base}/nope/{action}", json=body, headers=key)
        _same_404(hidden, missing, theirs)
        assert assert_problem(hidden, 404, "unknown-alert")["alert_id"] == theirs
    (record,) = [a for a in api.service.open_alerts() if a.id == theirs]
    assert not record.acked  # nothing was done to it
    assert record.shelved_until_ms is None
    acked = await api.client.post(f"{base}/{ours}/ack", headers=key)
    assert acked.json()["alert"]["acked_by"] == "api:plant1-ops"
    # a read key restricted to the site may see its alert but not act on it
    viewer = await api.key("plant1-view", "read", "plant-1")
    assert_problem(await api.client.post(f"{base}/{ours}/ack", headers=viewer), 403, "forbidden")


async def test_another_sites_closed_alert_is_not_found(api: Api) -> None:
    event = await api.raise_alert("lc8", site="plant-2")
    api.clock[0] += 1000
    await api.service.observe([condition("lc8", raise_met=False, site="plant-2")], api.clock[0])
    await api.client.post(f"/api/v1/alerts/{event.alert.id}/ack", headers=api.acker)
    assert api.service.open_alerts() == []
    url = f"/api/v1/alerts/{event.alert.id}"
    assert (await api.client.get(url, headers=api.auth())).status_code == 200
    plant1 = await api.key("plant1", "read", "plant-1")
    plant2 = await api.key("plant2", "read", "plant-2")
    assert_problem(await api.client.get(url, headers=plant1), 404, "not-found")
    assert_problem(await api.client.get(f"{url}/events", headers=plant1), 404, "not-found")
    assert (await api.client.get(url, headers=plant2)).json()["site"] == "plant-2"
    events = (await api.client.get(f"{url}/events", headers=plant2)).json()["events"]
    assert [e["type"] for e in events] == ["alert.raised", "alert.cleared", "alert.acked",
                                           "alert.closed"]  # fmt: skip


async def test_service_wide_endpoints_need_a_key_for_every_site(api: Api) -> None:
    site_key = await api.key("plant1", "ack", "plant-1")
    for path in ("/api/v1/status", "/api/v1/rules", "/api/v1/rules/history"):
        assert (await api.client.get(path, headers=api.auth())).status_code == 200
        body = assert_problem(await api.client.get(path, headers=site_key), 403, "forbidden")
        assert "restricted to sites" in body["detail"]


async def test_a_site_key_reads_its_sites_plans_and_cannot_replace_them(api: Api) -> None:
    assert (await api.client.put("/api/v1/plans", json=PLAN, headers=api.writer)).is_success
    site_key = await api.key("plant2", "ack", "plant-2")
    book = parse_plan_json((await api.client.get("/api/v1/plans", headers=site_key)).content)
    assert [p.site for p in book.skus] == ["plant-2"]
    assert [(d.site, d.quantity) for d in book.demand] == [("plant-2", 5)]
    as_toml = {**site_key, "Accept": "application/toml"}
    toml = await api.client.get("/api/v1/plans", headers=as_toml)
    assert "plant-2" in toml.text
    assert "plant-1" not in toml.text
    every = parse_plan_json((await api.client.get("/api/v1/plans", headers=api.auth())).content)
    assert len(every.skus) == 2
    assert_problem(await api.client.put("/api/v1/plans", json=PLAN, headers=site_key), 403)
    assert_problem(await api.client.put("/api/v1/rules", json={"rules": []}, headers=site_key), 403)


async def test_unknown_and_revoked_keys_get_the_same_answer(api: Api) -> None:
    unknown = await api.client.get("/api/v1/alerts", headers=api.auth("fd_" + "C" * 43))
    await api.deps.keys.revoke("viewer")
    revoked = await api.client.get("/api/v1/alerts", headers=api.auth())
    assert assert_problem(unknown, 401) == assert_problem(revoked, 401)
    assert unknown.headers["www-authenticate"] == revoked.headers["www-authenticate"]
