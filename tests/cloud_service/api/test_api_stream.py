"""The API served by uvicorn on a free port: the live alert stream needs a read key and
carries an alert raised after the client connected."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from conftest import NOW, build_deps, condition

from cloud_service.api import ApiServer, ApiSettings, create_api
from cloud_service.metadata import MetadataStore
from cloud_service.plans import PlanBook


@pytest.mark.integration
async def test_the_stream_over_a_real_server(metadata: MetadataStore) -> None:
    changed: list[PlanBook] = []
    deps = await build_deps(metadata, changed, [NOW])
    _, token = await deps.keys.create("viewer")
    settings = ApiSettings(port=0)
    async with ApiServer(create_api(deps, settings), settings) as server:
        assert server.port > 0
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/api/v1/alerts/stream")).status_code == 401
            headers = {"Authorization": f"Bearer {token}"}
            # after=0: whether the alert is raised before or after the server subscribes, it
            # comes (replayed from the buffer, or live), so the test does not race the server.
            url = "/api/v1/alerts/stream?after=0"
            async with client.stream("GET", url, headers=headers) as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                lines = resp.aiter_lines()
                assert (await anext(lines)).startswith("retry:")

                task = asyncio.create_task(deps.alerts.observe([condition()], NOW))
                seen: list[str] = []
                async with asyncio.timeout(10):
                    async for line in lines:
                        if line:
                            seen.append(line)
                        if line.startswith("data:"):
                            break
                await task
    assert seen[0].startswith("id: ")
    assert seen[1] == "event: alert.raised"
    assert '"actor":"system"' in seen[2]
