"""The status page served by a real (unconnected) agent: content, escaping, acknowledgements,
and the guards of a page operators open in a browser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from edge_agent.agent import Agent
from edge_agent.config import config_from_mapping
from edge_agent.spool.store import SpoolStore
from edge_agent.status import render_text, status_decoder
from edge_agent.status_server import BadRequestError, StatusServer, http_request
from shared.messages import Alert, AlertAck, AlertState, Severity

T0 = 1_790_000_000_000


def config(tmp_path: Path, **status: Any) -> Any:
    return config_from_mapping(
        {
            "site": "plant-1",
            "gateway": "gw-1",
            "spool": {"path": str(tmp_path / "spool.db")},
            "status": {"port": 0, **status},
            "sources": [{"type": "modbus", "id": "plc1", "host": "127.0.0.1"}],
            "signals": [{"id": "s1", "source": "plc1", "address": 0, "kind": "sensor"}],
        },
        use_env=False,
    )


def hostile_alert() -> Alert:
    return Alert(
        id="a-1",
        rule="r",
        severity=Severity.CRITICAL,
        state=AlertState.ACTIVE,
        subject="SKU-1",
        title="<script>alert(1)</script>",
        message='"quoted" & <b>bold</b>',
        action="reorder",
        raised=T0,
        updated=T0,
    )


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[tuple[Agent, int]]:
    cfg = config(tmp_path)
    store = SpoolStore(cfg.spool_path)
    agent = Agent(cfg, store=store, boot="b-1", started_ms=T0)
    agent.alerts.apply(hostile_alert())
    store.commit()
    server = StatusServer(cfg.status, agent)
    port = await server.start()
    yield agent, port
    await server.stop()
    store.close()


async def get(port: int, path: str) -> str:
    return (await http_request("127.0.0.1", port, "GET", path)).decode()


async def test_status_json_and_text(page: tuple[Agent, int]) -> None:
    _agent, port = page
    status = status_decoder.decode(await get(port, "/status.json"))
    assert (status.gateway, status.boot, status.connection.connected) == ("gw-1", "b-1", False)
    assert status.spool.batches == 0
    assert [a.id for a in status.alerts] == ["a-1"]
    text = "\n".join(render_text(status))
    assert "DISCONNECTED" in text
    assert "[critical] a-1 <script>alert(1)</script> (SKU-1), UNACKNOWLEDGED" in text
    assert await get(port, "/healthz") == "ok\n"


async def test_the_page_escapes_what_the_cloud_sent(page: tuple[Agent, int]) -> None:
    html = await get(port=page[1], path="/")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert 'action="/alerts/a-1/ack"' in html


async def test_acknowledge_by_form_and_by_json(page: tuple[Agent, int]) -> None:
    agent, port = page
    statuses: list[int] = []
    await http_request(
        "127.0.0.1",
        port,
        "POST",
        "/alerts/a-1/ack",
        body=b"operator=Ana+M&comment=called+the+planner",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        on_status=statuses.append,
    )
    assert statuses == [303]  # back to the page
    reply = await http_request(
        "127.0.0.1",
        port,
        "POST",
        "/alerts/a-1/ack",
        body=b'{"operator": "Ben"}',
        headers={"Content-Type": "application/json"},
    )
    assert msgspec.json.decode(reply, type=AlertAck).operator == "Ben"
    pending = agent.alerts.pending_acks()
    assert [msgspec.json.decode(p.payload, type=AlertAck).operator for p in pending] == [
        "Ana M",
        "Ben",
    ]
    assert agent.alerts.get("a-1").acked  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/alerts/nope/ack", b"operator=x", {}, 404),
        ("/alerts/a-1/ack", b"operator=", {}, 400),
        ("/alerts/a-1/ack", b"operator=a%0Ab", {}, 400),  # a newline in a name
        ("/alerts/a-1/ack", b"operator=x", {"Origin": "http://evil.example"}, 403),
        ("/alerts/a%2F1/ack", b"operator=x", {}, 404),
        ("/elsewhere", b"", {}, 404),
    ],
)
async def test_bad_acknowledgements_are_refused(
    page: tuple[Agent, int], path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    agent, port = page
    with pytest.raises(BadRequestError) as err:
        await http_request("127.0.0.1", port, "POST", path, body=body, headers=headers)
    assert err.value.status == status
    assert agent.alerts.pending_acks() == []


async def test_a_configured_token_is_required(tmp_path: Path) -> None:
    cfg = config(tmp_path, ack_token="s3cret")
    store = SpoolStore(cfg.spool_path)
    agent = Agent(cfg, store=store, boot="b-1", started_ms=T0)
    agent.alerts.apply(hostile_alert())
    server = StatusServer(cfg.status, agent)
    port = await server.start()
    try:
        assert 'name="token"' in await get(port, "/")
        with pytest.raises(BadRequestError) as err:
            await http_request("127.0.0.1", port, "POST", "/alerts/a-1/ack", body=b"operator=x")
        assert err.value.status == 403
        await http_request(
            "127.0.0.1", port, "POST", "/alerts/a-1/ack", body=b"operator=x&token=s3cret"
        )
        assert len(agent.alerts.pending_acks()) == 1
    finally:
        await server.stop()
        store.close()


async def test_oversized_and_garbled_requests_do_not_hurt_the_server(
    page: tuple[Agent, int],
) -> None:
    _agent, port = page
    with pytest.raises(BadRequestError) as err:
        await http_request("127.0.0.1", port, "POST", "/alerts/a-1/ack", body=b"x" * 20_000)
    assert err.value.status == 413
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"NONSENSE\r\n\r\n")
    await writer.drain()
    assert (await reader.read()).startswith(b"HTTP/1.1 400")
    writer.close()
    assert await get(port, "/healthz") == "ok\n"  # still serving
