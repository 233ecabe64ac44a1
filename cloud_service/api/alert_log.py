"""Reading the alert transition log (``alert_events``) for one alert.

``SqlAlertStore`` writes the log and pages it for the stream; the API also needs one alert's
history and, for an alert that has closed, its last recorded state. Read-only queries on the
same table, kept here so the alert store stays the alert subsystem's.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud_service.alerts.records import iso
from cloud_service.metadata.guard import guard
from cloud_service.metadata.schema import alert_events


async def events_of(engine: AsyncEngine, alert_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The transitions of one alert, oldest first (at most ``limit``)."""
    e = alert_events.c
    q = (
        select(e.id, e.kind, e.at_ms, e.actor, e.reason, e.severity, e.state, e.acked)
        .where(e.alert_id == alert_id)
        .order_by(e.id)
        .limit(limit)
    )
    with guard("alert events", engine.dialect.name):
        async with engine.connect() as conn:
            rows = (await conn.execute(q)).all()
    return [
        {"id": r.id, "type": f"alert.{r.kind}", "at": iso(r.at_ms), "actor": r.actor,
         "reason": r.reason, "severity": r.severity, "state": r.state, "acked": bool(r.acked)}
        for r in rows
    ]  # fmt: skip


async def last_state(engine: AsyncEngine, alert_id: str) -> dict[str, Any] | None:
    """The alert as its latest logged event left it (``AlertRecord.as_json``), if any."""
    e = alert_events.c
    q = select(e.body).where(e.alert_id == alert_id).order_by(e.id.desc()).limit(1)
    with guard("alert events", engine.dialect.name):
        async with engine.connect() as conn:
            body = await conn.scalar(q)
    if body is None:
        return None
    alert: dict[str, Any] = json.loads(body)["data"]["alert"]
    return alert


async def site_of(engine: AsyncEngine, alert_id: str) -> str | None:
    """The site of the alert as its log records it (None: no event of that id)."""
    e = alert_events.c
    q = select(e.site).where(e.alert_id == alert_id).limit(1)
    with guard("alert events", engine.dialect.name):
        async with engine.connect() as conn:
            site: str | None = await conn.scalar(q)
    return site
