"""Server-Sent Events of alert events, resumable with ``Last-Event-ID`` without a gap.

Event ids are the event log's ids (``alert_events.id``), so they survive a restart. A client
that reconnects with ``Last-Event-ID: n`` gets every event after ``n``: from the in-memory
ring buffer when it reaches back that far, otherwise from the store (``history``), then live.
The client's live queue is registered *before* the replay starts and duplicates are skipped
by id, so an event published during the replay is neither lost nor sent twice. A client that
falls ``client_queue`` events behind is disconnected; it reconnects and resumes from the store.
Without a history a too-old ``Last-Event-ID`` gets an ``alert.reset`` event: refetch state.
So does one newer than the newest stored event (the log was restored from a backup, or the id
is from another installation); the stream then continues after the newest event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.params import Depends
from starlette.responses import StreamingResponse

from cloud_service.alerts.settings import StreamSettings
from cloud_service.alerts.store import StoredEvent

RESET: Final = StoredEvent(0, "alert.reset", "", '{"type":"alert.reset"}')
_PAGE: Final = 500


class EventHistory(Protocol):
    async def events_after(self, after_id: int, limit: int = 1000) -> list[StoredEvent]: ...


@dataclass(eq=False, slots=True)
class _Subscriber:
    queue: asyncio.Queue[StoredEvent | None]
    overflowed: bool = field(default=False)


class AlertStream:
    def __init__(
        self,
        settings: StreamSettings | None = None,
        history: EventHistory | None = None,
        *,
        start_after: int = 0,
    ) -> None:
        """``start_after``: the last event id stored before this process started."""
        self.settings = settings or StreamSettings()
        self.history = history
        self._buffer: deque[StoredEvent] = deque()
        self._floor = start_after  # ids <= floor are not (all) in the buffer
        self._last = start_after
        self._subs: set[_Subscriber] = set()
        self._closed = False

    def publish(self, event: StoredEvent) -> None:
        """Called (on the event loop) after the event is stored, in id order."""
        self._buffer.append(event)
        self._last = max(self._last, event.id)
        while len(self._buffer) > self.settings.buffer_size:
            self._floor = max(self._floor, self._buffer.popleft().id)
        for sub in self._subs:
            if sub.overflowed:
                continue
            if sub.queue.qsize() >= self.settings.client_queue:
                # Too far behind: end its stream after what it already has (no gap); the
                # client resumes from its last id. The queue keeps one slot for this None.
                sub.overflowed = True
                sub.queue.put_nowait(None)
            else:
                sub.queue.put_nowait(event)

    @property
    def clients(self) -> int:
        return len(self._subs)

    def close(self) -> None:
        """End every open stream (at shutdown); clients reconnect and resume elsewhere."""
        self._closed = True
        for sub in self._subs:
            sub.overflowed = True
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)

    async def events(
        self, last_id: int | None = None, site: str | None = None
    ) -> AsyncIterator[StoredEvent | None]:
        """Events after ``last_id`` (None: only new ones); ``None`` items are heartbeats."""
        async for e in self._all(last_id):
            if e is None or e is RESET or site is None or e.site == site:
                yield e

    async def _all(self, last_id: int | None) -> AsyncIterator[StoredEvent | None]:
        sub = _Subscriber(asyncio.Queue(self.settings.client_queue + 1))
        self._subs.add(sub)  # before the replay: whatever is published meanwhile is queued
        try:
            sent = self._last if last_id is None else last_id
            if sent > self._last:  # an id this log never gave (a restored or another log)
                sent = self._last  # before yielding: what is published meanwhile comes next
                yield RESET
            async for e in self._replay(sent):
                yield e
                sent = self._floor if e is RESET else e.id
            while not self._closed:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), self.settings.heartbeat_s)
                except TimeoutError:
                    yield None
                    continue
                if item is None or sub.overflowed:
                    return
                if item.id > sent:
                    yield item
                    sent = item.id
        finally:
            self._subs.discard(sub)

    async def _replay(self, sent: int) -> AsyncIterator[StoredEvent]:
        if sent < self._floor:
            if self.history is None:
                yield RESET
                sent = self._floor
            while sent < self._floor and self.history is not None:
                page = await self.history.events_after(sent, _PAGE)
                for e in page:
                    yield e
                    sent = e.id
                if len(page) < _PAGE:
                    break
        for e in list(self._buffer):
            if e.id > sent:
                yield e
                sent = e.id


def format_sse(event: StoredEvent | None) -> str:
    if event is None:
        return ": keep-alive\n\n"
    data = "\n".join(f"data: {line}" for line in event.body.splitlines() or [""])
    head = f"id: {event.id}\n" if event.id else ""
    return f"{head}event: {event.type}\n{data}\n\n"


def resume_from(after: int | None, last_event_id: str | None) -> int | None:
    """The event id to resume after: the ``Last-Event-ID`` header, else ``?after=``."""
    if not last_event_id:
        return after
    try:
        return int(last_event_id)
    except ValueError:
        raise HTTPException(400, "Last-Event-ID must be an event id") from None


def sse_response(
    stream: AlertStream, events: AsyncIterator[StoredEvent | None]
) -> StreamingResponse:
    """``events`` as a ``text/event-stream`` response (heartbeats as comments)."""

    async def body() -> AsyncIterator[str]:
        yield f"retry: {stream.settings.retry_ms}\n\n"
        async for event in events:
            yield format_sse(event)

    headers: dict[str, Any] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


def stream_router(
    stream: AlertStream, *, path: str = "/alerts/stream", dependencies: Sequence[Depends] = ()
) -> APIRouter:
    """``GET {path}``: the live alert stream (``?site=`` filters; ``after=`` for clients
    that cannot send a ``Last-Event-ID`` header). Auth is the app's: pass ``dependencies``."""
    router = APIRouter(dependencies=list(dependencies))

    @router.get(path, response_class=StreamingResponse)
    async def alert_stream(
        site: str | None = Query(default=None, max_length=64),
        after: int | None = Query(default=None, ge=0),
        last_event_id: str | None = Header(default=None, alias="Last-Event-ID"),
    ) -> StreamingResponse:
        return sse_response(stream, stream.events(resume_from(after, last_event_id), site))

    return router
