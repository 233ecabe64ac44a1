"""Who may do what: no key or a bad one → 401, a key below the endpoint's scope → 403."""

from __future__ import annotations

import pytest
from conftest import NOW, Api, assert_problem
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_service.api import ApiSettings


async def test_health_needs_no_key(api: Api) -> None:
    response = await api.client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_reading_needs_a_valid_key_by_either_header(api: Api) -> None:
    missing = await api.client.get("/api/v1/status")
    assert_problem(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = "fd_" + "A" * 43
    assert_problem(await api.client.get("/api/v1/status", headers=api.auth(wrong)), 401)
    assert_problem(await api.client.get("/api/v1/status", headers={"X-API-Key": "x"}), 401)
    by_bearer = await api.client.get("/api/v1/status", headers=api.auth())
    assert by_bearer.json() == {"ingest": {"state": "running"}}
    by_header = await api.client.get("/api/v1/alerts", headers={"X-API-Key": api.read_token})
    assert by_header.status_code == 200


async def test_a_read_key_cannot_act_and_higher_scopes_can_read(api: Api) -> None:
    event = await api.raise_alert()
    url = f"/api/v1/alerts/{event.alert.id}/ack"
    body = assert_problem(await api.client.post(url, headers=api.auth()), 403, "forbidden")
    assert "viewer" in str(body["detail"])
    assert_problem(await api.client.post(url), 401)
    for headers in (api.acker, api.writer):
        assert (await api.client.get("/api/v1/alerts", headers=headers)).status_code == 200
        assert (await api.client.get("/api/v1/plans", headers=headers)).status_code == 200
    assert (await api.client.post(url, headers=api.acker)).status_code == 200
    assert (await api.client.post(url, headers=api.writer)).status_code == 200


async def test_a_revoked_key_is_refused_at_once_and_use_is_recorded(api: Api) -> None:
    assert (await api.client.get("/api/v1/status", headers=api.auth())).status_code == 200
    (viewer,) = [k for k in await api.deps.keys.list() if k.name == "viewer"]
    assert viewer.last_used_ms == NOW
    await api.deps.keys.revoke("viewer")
    assert_problem(await api.client.get("/api/v1/status", headers=api.auth()), 401)


@pytest.mark.parametrize("api_settings", [ApiSettings(allow_unauthenticated_read=True)])
async def test_anonymous_reading_when_allowed_but_never_writing(api: Api) -> None:
    event = await api.raise_alert()
    assert (await api.client.get("/api/v1/alerts")).json()["count"] == 1
    assert_problem(await api.client.post(f"/api/v1/alerts/{event.alert.id}/ack"), 401)
    bad = api.auth("fd_" + "B" * 43)
    assert_problem(await api.client.get("/api/v1/alerts", headers=bad), 401)


async def test_the_openapi_document_describes_the_endpoints(api: Api) -> None:
    response = await api.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/alerts/{alert_id}/ack", "/api/v1/plans", "/api/v1/alerts/stream"} <= set(paths)
    ack_params = {p["name"] for p in paths["/api/v1/alerts/{alert_id}/ack"]["post"]["parameters"]}
    assert ack_params == {"alert_id"}  # the key is a security scheme, not a parameter
    assert response.json()["components"]["securitySchemes"].keys() == {"HTTPBearer", "APIKeyHeader"}


async def test_an_unavailable_store_is_503(api: Api) -> None:
    # Point the plan store at a database that refuses connections.
    api.deps.plans.engine = create_async_engine(
        "postgresql+asyncpg://postgres@127.0.0.1:1/none", connect_args={"timeout": 2}
    )
    try:
        response = await api.client.get("/api/v1/plans", headers=api.auth())
    finally:
        await api.deps.plans.engine.dispose()
    assert_problem(response, 503, "unavailable")
    assert response.headers["retry-after"] == "5"
