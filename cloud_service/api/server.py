"""Serving the API with uvicorn inside the service's own event loop.

The service owns signals (SIGINT/SIGTERM stop everything in order), so uvicorn must not
install its own handlers; and with ``port = 0`` the caller needs the port actually bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from cloud_service.api.settings import ApiSettings


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the service handles signals and calls ApiServer.stop


class ApiServer:
    """``async with ApiServer(app, settings) as server: ... server.port ...``"""

    def __init__(self, app: FastAPI, settings: ApiSettings) -> None:
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, lifespan="off", ws="none",
            access_log=False, log_level="warning", timeout_graceful_shutdown=5,
        )  # fmt: skip
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit as exc:  # uvicorn exits when it cannot bind: in a task, SystemExit
            # would escape the event loop and stop the whole service (ingest included)
            raise OSError(f"the API server stopped at start-up (uvicorn exit {exc.code})") from None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="api-server")
        while not self._server.started:
            if self._task.done():
                with contextlib.suppress(OSError):  # uvicorn logs why (port in use...)
                    await self._task
                self._task = None
                config = self._server.config
                raise OSError(f"the API server could not listen on {config.host}:{config.port}")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the API server is not listening")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
