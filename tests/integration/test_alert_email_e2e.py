"""E-mail through the running service: a real SMTP server gets each alert, and a storm as a
summary, with nothing lost (issue 7: e-mail, rate limits, storms summarised).

Twelve gateways of one site go offline at once, as when a plant's uplink fails: twelve
``gateway-offline`` alerts. The planner's mailbox must not get twelve mails (the e-mail
channel's storm threshold is 3, its per-recipient burst 3), and must not miss any alert.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from alert_e2e_support import open_alert, publish_offline, raise_gateway_offline, running
from ingest_support import Publisher, cloud_settings, sqlite_url, until

from cloud_service.alerts.records import AlertRecord
from firmware_sim.stack import InfluxServer, MosquittoServer
from tests.cloud_service.alerts.smtp_support import smtp_inbox

pytestmark = pytest.mark.integration

GATEWAYS = 12


def _ids_in(text: str, known: set[str]) -> set[str]:
    return {m for m in re.findall(r"[0-9A-Za-z_-]{8,}", text) if m in known}


async def test_a_storm_of_alerts_reaches_the_planner_as_few_mails_missing_none(
    fresh_mosquitto: Callable[..., MosquittoServer],
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    broker = fresh_mosquitto()  # no other test's retained gateways
    site = unique_name("site")
    with smtp_inbox() as (inbox, port):
        settings = cloud_settings(
            broker, influxd, unique_name, sqlite_url(tmp_path),
            live={"evaluate_interval_s": 0.2},
            alerts={
                "outbox": {"retry_base_s": 0.1, "retry_cap_s": 1.0},
                "email": {
                    "host": "127.0.0.1", "port": port, "security": "none",
                    "sender": "alerts@flightdeck.test",
                    "recipients": [{"address": "planner@example.com", "sites": [site]}],
                },
            },
        )  # fmt: skip
        async with running(settings) as cloud:
            pubs = [Publisher(broker, site, f"gw-{i:02d}") for i in range(GATEWAYS)]
            try:
                for pub in pubs:
                    raise_gateway_offline(pub)
                await until(lambda: all(p.acks for p in pubs), 30, "every gateway's batch stored")
                for pub in pubs:
                    publish_offline(pub)

                def raised() -> list[AlertRecord]:
                    runtime = cloud.runtime
                    assert runtime is not None
                    assert runtime.service is not None
                    return [
                        a
                        for a in runtime.service.open_alerts()
                        if a.key.rule == "gateway-offline" and a.key.site == site
                    ]

                await until(lambda: len(raised()) == GATEWAYS, 60, "an alert per gateway")
                assert open_alert(cloud, "gateway-offline", site) is not None
                ids = {a.id for a in raised()}

                def covered() -> set[str]:
                    return set().union(*(_ids_in(m.get_content(), ids) for _, m in inbox.messages))

                await until(lambda: covered() == ids, 60, "every alert in some mail")
            finally:
                for pub in pubs:
                    pub.close()

    mails = [m for _, m in inbox.messages]
    assert all(env.rcpt_tos == ["planner@example.com"] for env, _ in inbox.messages)
    summaries = [m for m in mails if m["Subject"].startswith("[Flightdeck] ")]
    singles = [m for m in mails if m not in summaries]
    # at most the per-recipient burst one by one, the rest summarised
    assert len(singles) <= 3
    assert len(summaries) >= 1
    assert len(mails) < GATEWAYS // 2
    for m in summaries:
        assert "alert notifications were summarised to avoid a flood" in m.get_content()
    for m in singles:
        assert m["Subject"].startswith("[CRITICAL] ")
