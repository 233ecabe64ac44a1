"""The API on real components: a migrated metadata store (SQLite and PostgreSQL, from
``tests/cloud_service/conftest.py``), a real AlertService with its SqlAlertStore and stream,
real API keys and plan store; requests go through httpx's ASGI transport.

The ``api`` fixture's keys: ``viewer`` (read), ``operator`` (ack) and ``ops`` (admin), all
for every site."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.records import AlertEvent, AlertKey, ConditionState, RuleType
from cloud_service.alerts.routing import Router
from cloud_service.alerts.rule_store import SqlRuleStore
from cloud_service.alerts.rules import Rule
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings, MqttAlertSettings, StreamSettings
from cloud_service.alerts.store import SqlAlertStore
from cloud_service.alerts.stream import AlertStream
from cloud_service.api import ApiDeps, ApiSettings, SqlApiKeyStore, create_api
from cloud_service.metadata import MetadataStore
from cloud_service.plans import PlanBook
from cloud_service.plans.store import SqlPlanStore
from shared.messages import Severity

NOW = 1_790_000_000_000


def condition(
    subject: str = "lc7",
    raise_met: bool = True,
    *,
    site: str = "s1",
    severity: Severity = Severity.WARNING,
) -> ConditionState:
    return ConditionState(
        key=AlertKey("stuck", site, subject), rule_type=RuleType.SENSOR_STUCK,
        raise_met=raise_met, hold_met=raise_met, severity=severity,
        title=f"Load cell {subject} stuck", message=f"{subject} has not changed for 20 min",
        action=f"Check {subject}", figures={"stuck_min": 20.0}, gateway="gw-1",
    )  # fmt: skip


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """A problem-details response (RFC 9457) with this status (and problem code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert set(body) >= {"type", "title", "status", "detail"}
    if code is not None:
        assert body["type"] == f"urn:flightdeck:problem:{code}"
    return body


@dataclass
class Api:
    client: httpx.AsyncClient
    deps: ApiDeps
    service: AlertService
    read_token: str
    write_token: str  # the admin key
    changed: list[PlanBook] = field(default_factory=list)
    clock: list[int] = field(default_factory=lambda: [NOW])
    rules_changed: list[list[Rule]] = field(default_factory=list)
    ack_token: str = ""

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.read_token}"}

    @property
    def writer(self) -> dict[str, str]:
        """The admin key's header."""
        return {"X-API-Key": self.write_token}

    @property
    def acker(self) -> dict[str, str]:
        """The ack key's header."""
        return {"X-API-Key": self.ack_token}

    async def key(self, name: str, scope: str = "read", *sites: str) -> dict[str, str]:
        """The header of a new key."""
        _, token = await self.deps.keys.create(name, scope, sites)
        return self.auth(token)

    async def raise_alert(self, subject: str = "lc7", **kw: Any) -> AlertEvent:
        (event,) = await self.service.observe([condition(subject, **kw)], self.clock[0])
        return event


async def build_deps(
    metadata: MetadataStore,
    changed: list[PlanBook],
    clock: list[int],
    rules_changed: list[list[Rule]] | None = None,
    stream_settings: StreamSettings | None = None,
) -> ApiDeps:
    store = SqlAlertStore(metadata.engine)
    settings = AlertSettings(mqtt=MqttAlertSettings(enabled=False))
    router = Router(settings, OutboxPolicy.from_settings(settings.outbox))
    stream = AlertStream(stream_settings, history=store, start_after=await store.last_event_id())
    service = await AlertService.open(store, router, stream=stream)
    return ApiDeps(
        alerts=service, alert_store=store, stream=stream, plans=SqlPlanStore(metadata.engine),
        keys=SqlApiKeyStore(metadata.engine, clock=lambda: clock[0]),
        status=lambda: {"ingest": {"state": "running"}}, on_plans_changed=changed.append,
        now_ms=lambda: clock[0],
        rules=SqlRuleStore(metadata.engine, clock=lambda: clock[0]),
        on_rules_changed=None if rules_changed is None else rules_changed.append,
    )  # fmt: skip


@pytest.fixture
def api_settings() -> ApiSettings:
    return ApiSettings()


@pytest.fixture
async def api(metadata: MetadataStore, api_settings: ApiSettings) -> AsyncIterator[Api]:
    changed: list[PlanBook] = []
    clock = [NOW]
    rules_changed: list[list[Rule]] = []
    deps = await build_deps(metadata, changed, clock, rules_changed)
    _, read_token = await deps.keys.create("viewer", "read")
    _, ack_token = await deps.keys.create("operator", "ack")
    _, admin_token = await deps.keys.create("ops", "admin")
    app = create_api(deps, api_settings)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://flightdeck") as client:
        yield Api(client, deps, deps.alerts, read_token, admin_token, changed, clock,
                  rules_changed, ack_token)  # fmt: skip
