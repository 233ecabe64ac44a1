"""``/api/v1/alerts``: list and read alerts, their history; acknowledge, shelve, unshelve.

Thin: each handler calls ``AlertService`` (which serialises every change and records it with
the caller as actor) and turns the resulting ``AlertRecord`` into JSON. Errors propagate to
``problems``, which maps them to 404/409/422.

A key restricted to sites lists only those sites' alerts; any other site's alert is answered
exactly as an alert that does not exist (404), so a key learns nothing of other sites. The
checks are the dependencies ``readable`` and ``acting``: every per-alert route has one.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at runtime, and
# their dependencies are local to the factory below.

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cloud_service.alerts.errors import UnknownAlertError
from cloud_service.alerts.records import AlertEvent, AlertRecord
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.store import SqlAlertStore
from cloud_service.api.alert_log import events_of, last_state, site_of
from cloud_service.api.auth import Guard, Guards, Principal
from shared.messages import AlertState, Severity

AlertId = Annotated[str, Path(min_length=1, max_length=64)]


class AckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(None, max_length=2000)


class ShelveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minutes: float = Field(gt=0, allow_inf_nan=False)
    reason: str = Field("", max_length=2000)


class UnshelveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000)


def alert_router(
    alerts: AlertService,
    store: SqlAlertStore,
    now_ms: Callable[[], int],
    guards: Guards,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
    Reader = Annotated[Principal, Depends(guards.read)]

    def find(alert_id: str) -> AlertRecord | None:
        return next((a for a in alerts.open_alerts() if a.id == alert_id), None)

    async def hidden(alert_id: str, who: Principal) -> bool:
        """The alert is not one this caller may see (another site's, or none at all)."""
        if who.every_site:
            return False
        record = find(alert_id)
        site = record.key.site if record is not None else await site_of(store.engine, alert_id)
        return site is None or not who.sees(site)

    async def readable(alert_id: AlertId, who: Reader) -> Principal:
        if await hidden(alert_id, who):
            raise HTTPException(404, f"no alert {alert_id!r}")
        return who

    def acting(action: str) -> Guard:
        async def check(
            alert_id: AlertId, who: Annotated[Principal, Depends(guards.ack)]
        ) -> Principal:
            if await hidden(alert_id, who):  # the very answer the lifecycle gives
                raise UnknownAlertError(
                    f"no open alert {alert_id!r}", alert_id=alert_id, action=action
                )
            return who

        return check

    Viewer = Annotated[Principal, Depends(readable)]

    @router.get("")
    async def list_alerts(
        who: Reader,
        site: Annotated[str | None, Query(max_length=64)] = None,
        severity: Severity | None = None,
        state: AlertState | None = None,
        acked: bool | None = None,
    ) -> dict[str, Any]:
        """The open alerts (active, or cleared and awaiting acknowledgement), newest first."""
        found = [
            a for a in alerts.open_alerts()
            if who.sees(a.key.site)
            and (site is None or a.key.site == site)
            and (severity is None or a.severity == severity)
            and (state is None or a.state == state)
            and (acked is None or a.acked == acked)
        ]  # fmt: skip
        found.sort(key=lambda a: (a.raised_ms, a.id), reverse=True)
        return {"count": len(found), "alerts": [a.as_json() for a in found]}

    @router.get("/{alert_id}")
    async def get_alert(alert_id: AlertId, _: Viewer) -> dict[str, Any]:
        """An open alert, or a closed one as its last logged event left it."""
        record = find(alert_id)
        if record is not None:
            return record.as_json()
        logged = await last_state(store.engine, alert_id)
        if logged is None:
            raise HTTPException(404, f"no alert {alert_id!r}")
        return logged

    @router.get("/{alert_id}/events")
    async def alert_events(
        alert_id: AlertId, _: Viewer, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
    ) -> dict[str, Any]:
        """The alert's transitions, oldest first: who did what, when and why."""
        events = await events_of(store.engine, alert_id, limit)
        if not events and find(alert_id) is None:
            raise HTTPException(404, f"no alert {alert_id!r}")
        return {"alert_id": alert_id, "events": events}

    @router.post("/{alert_id}/ack")
    async def acknowledge(
        alert_id: AlertId,
        who: Annotated[Principal, Depends(acting("acknowledge"))],
        body: Annotated[AckBody | None, Body()] = None,
    ) -> dict[str, Any]:
        """Acknowledge (idempotent); the alert closes if it has cleared already."""
        comment = body.comment if body is not None else None
        events = await alerts.acknowledge(
            alert_id, actor=who.actor, now_ms=now_ms(), reason=comment or "acknowledged via API"
        )
        return _after(alert_id, events, find)

    @router.post("/{alert_id}/shelve")
    async def shelve(
        alert_id: AlertId, who: Annotated[Principal, Depends(acting("shelve"))], body: ShelveBody
    ) -> dict[str, Any]:
        """Hide the alert from notification for ``minutes`` (at most the policy's maximum)."""
        now = now_ms()
        events = await alerts.shelve(
            alert_id, until_ms=now + round(body.minutes * 60_000), actor=who.actor, now_ms=now,
            reason=body.reason or f"shelved via API for {body.minutes:g} min",
        )  # fmt: skip
        return _after(alert_id, events, find)

    @router.post("/{alert_id}/unshelve")
    async def unshelve(
        alert_id: AlertId,
        who: Annotated[Principal, Depends(acting("unshelve"))],
        body: Annotated[UnshelveBody | None, Body()] = None,
    ) -> dict[str, Any]:
        reason = (body.reason if body is not None else "") or "unshelved via API"
        events = await alerts.unshelve(alert_id, actor=who.actor, now_ms=now_ms(), reason=reason)
        return _after(alert_id, events, find)

    return router


def _after(
    alert_id: str, events: list[AlertEvent], find: Callable[[str], AlertRecord | None]
) -> dict[str, Any]:
    """The alert after an operator action: from its last event, or as it stands."""
    record = events[-1].alert if events else find(alert_id)
    if record is None:  # closed by someone else meanwhile
        raise HTTPException(404, f"no open alert {alert_id!r}")
    return {"alert": record.as_json(), "events": [e.type for e in events]}
