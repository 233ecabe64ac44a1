"""An API that cannot listen fails its start with an OSError; the event loop (and with it
ingest, which shares it) goes on. uvicorn exits the process on a bind error: in a task, that
SystemExit would escape the loop."""

from __future__ import annotations

import asyncio
import socket

import pytest
from fastapi import FastAPI

from cloud_service.api.server import ApiServer
from cloud_service.api.settings import ApiSettings


async def test_a_port_in_use_is_an_oserror_not_the_end_of_the_process() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        server = ApiServer(FastAPI(), ApiSettings(port=port))
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            await server.start()
        assert await asyncio.wait_for(asyncio.sleep(0.01, "alive"), 1) == "alive"
    finally:
        taken.close()
