"""Fixtures shared by the whole test suite.

The stack fixtures run the real Mosquitto and influxd binaries (see
``firmware_sim.stack``): mocks would hide the queueing, ACL, TLS and
crash-recovery behaviour the system depends on. Session-scoped servers are
shared for speed, so tests sharing them must isolate themselves with
``unique_name`` topics and database names; tests that stop, kill, restart or
reconfigure a server use the ``fresh_*`` factories instead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from cloud_service.storage.influx import InfluxSettings, InfluxStore
from cloud_service.storage.influxql import drop_database
from firmware_sim.stack import (
    BinaryNotFoundError,
    InfluxServer,
    MosquittoOptions,
    MosquittoServer,
)
from shared.ids import is_valid_id


def _new_mosquitto(workdir: Path, options: MosquittoOptions | None = None) -> MosquittoServer:
    try:
        return MosquittoServer(workdir, options)
    except BinaryNotFoundError as exc:
        message = str(exc)
    # Fail, not skip: a silently skipped integration suite looks green.
    pytest.fail(message, pytrace=False)


def _new_influxd(workdir: Path, *, auth: bool = False) -> InfluxServer:
    try:
        return InfluxServer(workdir, auth=auth)
    except BinaryNotFoundError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def stack_workdir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``make(name) -> Path``: a new empty folder for one server's config/data/log."""

    def make(name: str) -> Path:
        return tmp_path_factory.mktemp(name)

    return make


@pytest.fixture(scope="session")
def mosquitto(stack_workdir: Callable[[str], Path]) -> Iterator[MosquittoServer]:
    """One anonymous broker for the session (``max_queued_messages 0``); never restart it."""
    server = _new_mosquitto(stack_workdir("mosquitto"), MosquittoOptions())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_mosquitto(
    stack_workdir: Callable[[str], Path],
) -> Iterator[Callable[..., MosquittoServer]]:
    """``make(options=MosquittoOptions()) -> MosquittoServer``, started; stopped at teardown."""
    servers: list[MosquittoServer] = []

    def make(options: MosquittoOptions | None = None) -> MosquittoServer:
        server = _new_mosquitto(stack_workdir("mosquitto-fresh"), options)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def influxd(stack_workdir: Callable[[str], Path]) -> Iterator[InfluxServer]:
    """One influxd (no auth) for the session; tests use their own database names."""
    server = _new_influxd(stack_workdir("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_influxd(
    stack_workdir: Callable[[str], Path],
) -> Iterator[Callable[..., InfluxServer]]:
    """``make(auth=False) -> InfluxServer``, started; stopped at teardown."""
    servers: list[InfluxServer] = []

    def make(auth: bool = False) -> InfluxServer:
        server = _new_influxd(stack_workdir("influxd-fresh"), auth=auth)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
async def influx_store(
    influxd: InfluxServer, unique_name: Callable[[str], str]
) -> AsyncIterator[InfluxStore]:
    """A store on a database of its own in the session's influxd, dropped afterwards."""
    store = InfluxStore(InfluxSettings(url=influxd.url, database=unique_name("db")))
    await store.ensure_database()
    try:
        yield store
    finally:
        await store.query(drop_database(store.settings.database))
        await store.aclose()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """``unique_name(prefix) -> prefix + 8 hex chars``, valid as topic level and DB name."""

    def make(prefix: str = "t") -> str:
        name = f"{prefix}{uuid.uuid4().hex[:8]}"
        if not is_valid_id(name):
            raise ValueError(f"prefix {prefix!r} gives an invalid name {name!r}")
        return name

    return make
