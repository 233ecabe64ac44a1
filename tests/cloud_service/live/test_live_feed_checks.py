"""The live feed (``[live] source = "subscription"``) refuses what ingest refuses: a birth that
names another gateway, and bytes that are not JSON. No broker: the feed's drain is fed directly."""

from __future__ import annotations

import asyncio
import json

from cloud_service.ingest.health import HealthCore
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.feed import LiveFeed
from cloud_service.settings import load_settings

NOW = 1_790_000_000_000


def birth(gateway: str, signals: list[str]) -> bytes:
    doc = {
        "gateway": gateway, "site": "site-b", "boot": "b1", "agent_version": "1",
        "config_hash": "h", "started_ms": NOW,
        "signals": [{"id": s, "kind": "stock_level", "sku": "SKU1"} for s in signals],
    }  # fmt: skip
    return json.dumps(doc).encode()


def live_signals(live: LiveAnalytics, gateway: str) -> list[str]:
    return sorted(i.signal for i in live.index.infos if i.spec and i.gateway == gateway)


def test_a_birth_naming_another_gateway_or_bad_bytes_change_nothing() -> None:
    settings = load_settings(None, api={"port": 0})
    live = LiveAnalytics(settings.live)
    health = HealthCore(settings.health.stale_after_periods)
    feed = LiveFeed(settings, live, health, "test-live")
    topic = "flightdeck/v1/site-b/{}/birth"
    feed._inbox.append((topic.format("gw-02"), birth("gw-02", ["tank1", "tank2"]), NOW))
    feed._drain()
    assert live_signals(live, "gw-02") == ["tank1", "tank2"]
    # gw-01, on its own topic, names gw-02 with no signals: would retire gw-02's series
    feed._inbox.append((topic.format("gw-01"), birth("gw-02", []), NOW + 1))
    # bytes that are not UTF-8 inside a string once ended the feed's task
    feed._inbox.append((topic.format("gw-02"), b'{"gateway":"gw-\xff"}', NOW + 2))
    feed._drain()
    assert live_signals(live, "gw-02") == ["tank1", "tank2"]
    assert sorted(health._gateway("site-b", "gw-02").signals) == ["tank1", "tank2"]
    assert feed.undecodable == 2
    assert feed.messages == 3


async def test_losing_the_broker_holds_health_and_reconnecting_resumes_it() -> None:
    settings = load_settings(None, api={"port": 0})
    health = HealthCore(settings.health.stale_after_periods)
    feed = LiveFeed(settings, LiveAnalytics(settings.live), health, "test-live")
    feed._loop = asyncio.get_running_loop()
    feed._on_connected(NOW)
    assert not health.held
    feed._on_disconnect(feed.client, None, None, "broker gone", None)  # paho's thread, really
    await asyncio.sleep(0.01)
    assert health.held  # the gateways' silence from now on is the cloud's
    feed._on_connected(NOW + 60_000)
    assert not health.held
    assert health.resumed_ms == NOW + 60_000
