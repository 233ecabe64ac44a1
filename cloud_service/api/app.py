"""``create_api``: the FastAPI application of the cloud service, built from what it serves.

Everything arrives in :class:`ApiDeps` (services and stores the caller owns and closes); the
app holds no state of its own, so the service mounts it, and tests build it on real stores.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at runtime, and
# their dependencies are local to the factory below.

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from cloud_service.alerts.rule_store import SqlRuleStore
from cloud_service.alerts.rules import Rule
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.store import SqlAlertStore
from cloud_service.alerts.stream import AlertStream
from cloud_service.api.alert_routes import alert_router
from cloud_service.api.auth import Principal, guards
from cloud_service.api.keys import SqlApiKeyStore
from cloud_service.api.plan_routes import plan_router
from cloud_service.api.problems import install_handlers
from cloud_service.api.rule_routes import rule_router
from cloud_service.api.settings import ApiSettings
from cloud_service.api.stream_routes import alert_stream_router
from cloud_service.plans.model import PlanBook
from cloud_service.plans.store import SqlPlanStore


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ApiDeps:
    alerts: AlertService
    alert_store: SqlAlertStore
    stream: AlertStream
    plans: SqlPlanStore
    keys: SqlApiKeyStore
    status: Callable[[], dict[str, Any]]
    on_plans_changed: Callable[[PlanBook], None] | None = None
    #: The clock of operator actions (shelving ends ``minutes`` after it); tests pass their own.
    now_ms: Callable[[], int] = wall_ms
    #: The alert rules (``/api/v1/rules`` is served only with a store) and who to tell of a change.
    rules: SqlRuleStore | None = None
    on_rules_changed: Callable[[list[Rule]], None] | None = None


def create_api(deps: ApiDeps, settings: ApiSettings) -> FastAPI:
    app = FastAPI(
        title="Flightdeck",
        summary="S&OE monitoring: alerts, plans, status",
        version="1",
        docs_url="/api/v1/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    install_handlers(app)
    access = guards(deps.keys, anonymous_read=settings.allow_unauthenticated_read)

    @app.get("/api/v1/health", tags=["service"])
    async def health() -> dict[str, str]:
        """Liveness, without a key: the process answers."""
        return {"status": "ok"}

    @app.get("/api/v1/status", tags=["service"])
    async def status(_: Annotated[Principal, Depends(access.service)]) -> dict[str, Any]:
        """The running service's own report (ingest, analytics, alert delivery); its figures
        are of every site, so it needs a key for every site."""
        return deps.status()

    # The stream first: /alerts/stream must not be read as the alert with id "stream".
    app.include_router(alert_stream_router(deps.stream, access, "/api/v1/alerts/stream"))
    app.include_router(alert_router(deps.alerts, deps.alert_store, deps.now_ms, access))
    app.include_router(plan_router(deps.plans, deps.on_plans_changed, access))
    if deps.rules is not None:
        app.include_router(rule_router(deps.rules, deps.on_rules_changed, access))
    return app
