"""``GET /api/v1/alerts/stream``: the live alert stream (SSE) as a key may see it.

The events, their ids and the ``Last-Event-ID`` resume are :class:`AlertStream`'s; this route
adds who is asking. A key restricted to sites gets those sites' events only, the replayed
history included. The key is checked again at every heartbeat and, while events flow, before
an event when the last check is more than ``RECHECK_S`` old (a burst or a long replay costs one
query a second, not one an event): once it is revoked the stream ends, and reconnecting with
it answers 401. While the metadata store cannot answer, the stream goes on and the key is
checked again later.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at runtime, and
# their dependencies are local to the factory below.

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Header, Query
from starlette.responses import StreamingResponse

from cloud_service.alerts.store import StoredEvent
from cloud_service.alerts.stream import RESET, AlertStream, resume_from, sse_response
from cloud_service.api.auth import Guards, Principal

log = logging.getLogger(__name__)

#: While events flow, the key is checked again before an event once its last check is older.
RECHECK_S: Final = 1.0


async def events_for(
    stream: AlertStream,
    who: Principal,
    still_valid: Callable[[Principal], Awaitable[bool]],
    last_id: int | None = None,
    site: str | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[StoredEvent | None]:
    """``stream.events`` for ``who``: its sites' events and heartbeats (``None``), until its
    key is no longer valid."""
    every = stream.settings.heartbeat_s
    recheck = min(every, RECHECK_S)
    checked = sent = clock()
    # every site's events come through here (``?site=`` is applied below): each one is a
    # chance to check the key again, and keep-alives do not depend on the filter
    events = stream.events(last_id)
    try:
        async for event in events:
            now = clock()
            if event is None or now - checked >= recheck:
                checked = now
                if not await still_valid(who):
                    log.info("API key %r is no longer valid: its alert stream ends", who.name)
                    return
            wanted = event is not None and (site is None or event.site == site)
            if event is None or event is RESET or (wanted and who.sees(event.site)):
                sent = now
                yield event
            elif now - sent >= every:  # only other sites' events: keep the connection alive
                sent = now
                yield None
    finally:
        if isinstance(events, AsyncGenerator):  # unsubscribe now, not when collected
            await events.aclose()


def alert_stream_router(stream: AlertStream, guards: Guards, path: str) -> APIRouter:
    """``GET {path}``: ``?site=`` filters further; ``after=`` for clients that cannot send a
    ``Last-Event-ID`` header."""
    router = APIRouter(tags=["alerts"])

    @router.get(path, response_class=StreamingResponse)
    async def alert_stream(
        who: Annotated[Principal, Depends(guards.read)],
        site: str | None = Query(default=None, max_length=64),
        after: int | None = Query(default=None, ge=0),
        last_event_id: str | None = Header(default=None, alias="Last-Event-ID"),
    ) -> StreamingResponse:
        """Server-Sent Events of the alerts of the key's sites (see docs/alerts.md)."""
        resume = resume_from(after, last_event_id)
        return sse_response(stream, events_for(stream, who, guards.still_valid, resume, site))

    return router
