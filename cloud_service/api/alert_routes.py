"""``/api/v1/alerts``: list and read alerts, their history; acknowledge, shelve, unshelve.

Thin: each handler calls ``AlertService`` (which serialises every change and records it with
the caller as actor) and turns the resulting ``AlertRecord`` into JSON. Errors propagate to
``problems``, which maps them to 404/409/422.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at runtime, and
# their dependencies are local to the factory below.

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cloud_service.alerts.records import AlertEvent, AlertRecord
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.store import SqlAlertStore
from cloud_service.api.alert_log import events_of, last_state
from cloud_service.api.auth import Guard, Principal
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
    read: Guard,
    write: Guard,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
    Reader = Annotated[Principal, Depends(read)]
    Writer = Annotated[Principal, Depends(write)]

    def find(alert_id: str) -> AlertRecord | None:
        return next((a for a in alerts.open_alerts() if a.id == alert_id), None)

    @router.get("")
    async def list_alerts(
        _: Reader,
        site: Annotated[str | None, Query(max_length=64)] = None,
        severity: Severity | None = None,
        state: AlertState | None = None,
        acked: bool | None = None,
    ) -> dict[str, Any]:
        """The open alerts (active, or cleared and awaiting acknowledgement), newest first."""
        found = [
            a for a in alerts.open_alerts()
            if (site is None or a.key.site == site)
            and (severity is None or a.severity == severity)
            and (state is None or a.state == state)
            and (acked is None or a.acked == acked)
        ]  # fmt: skip
        found.sort(key=lambda a: (a.raised_ms, a.id), reverse=True)
        return {"count": len(found), "alerts": [a.as_json() for a in found]}

    @router.get("/{alert_id}")
    async def get_alert(alert_id: AlertId, _: Reader) -> dict[str, Any]:
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
        alert_id: AlertId, _: Reader, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
    ) -> dict[str, Any]:
        """The alert's transitions, oldest first: who did what, when and why."""
        events = await events_of(store.engine, alert_id, limit)
        if not events and find(alert_id) is None:
            raise HTTPException(404, f"no alert {alert_id!r}")
        return {"alert_id": alert_id, "events": events}

    @router.post("/{alert_id}/ack")
    async def acknowledge(
        alert_id: AlertId, who: Writer, body: Annotated[AckBody | None, Body()] = None
    ) -> dict[str, Any]:
        """Acknowledge (idempotent); the alert closes if it has cleared already."""
        comment = body.comment if body is not None else None
        events = await alerts.acknowledge(
            alert_id, actor=who.actor, now_ms=now_ms(), reason=comment or "acknowledged via API"
        )
        return _after(alert_id, events, find)

    @router.post("/{alert_id}/shelve")
    async def shelve(alert_id: AlertId, who: Writer, body: ShelveBody) -> dict[str, Any]:
        """Hide the alert from notification for ``minutes`` (at most the policy's maximum)."""
        now = now_ms()
        events = await alerts.shelve(
            alert_id, until_ms=now + round(body.minutes * 60_000), actor=who.actor, now_ms=now,
            reason=body.reason or f"shelved via API for {body.minutes:g} min",
        )  # fmt: skip
        return _after(alert_id, events, find)

    @router.post("/{alert_id}/unshelve")
    async def unshelve(
        alert_id: AlertId, who: Writer, body: Annotated[UnshelveBody | None, Body()] = None
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
