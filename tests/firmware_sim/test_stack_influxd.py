"""The influxd harness must persist like production: WAL replay after kill -9, auth.

These run real ``influxd`` 1.6 processes through its HTTP API, the same way
the cloud service's writer does.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from firmware_sim.stack import InfluxServer, ServiceStartError

pytestmark = pytest.mark.integration


def query(
    server: InfluxServer,
    q: str,
    db: str | None = None,
    auth: tuple[str, str] | None = None,
) -> httpx.Response:
    params = {"q": q, "epoch": "ms"}
    if db is not None:
        params["db"] = db
    method = "GET" if q.lstrip().upper().startswith(("SELECT", "SHOW")) else "POST"
    return httpx.request(method, f"{server.url}/query", params=params, auth=auth, timeout=10)


def create_database(server: InfluxServer, db: str) -> None:
    response = query(server, f'CREATE DATABASE "{db}"', auth=server.credentials)
    assert response.status_code == 200, response.text
    assert "error" not in response.text


def write(server: InfluxServer, db: str, lines: str) -> None:
    response = httpx.post(
        f"{server.url}/write",
        params={"db": db, "precision": "ms"},
        content=lines.encode(),
        auth=server.credentials,
        timeout=10,
    )
    assert response.status_code == 204, response.text


def rows(server: InfluxServer, db: str, q: str) -> list[list[Any]]:
    response = query(server, q, db=db, auth=server.credentials)
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert "error" not in result, result
    series = result.get("series", [])
    return [row for s in series for row in s["values"]]


LINES = (
    "stock,site=plant1,sku=A100 level=41.5,units=12i 1700000000000\n"
    "stock,site=plant1,sku=A100 level=40.0,units=11i 1700000001000\n"
    "stock,site=plant2,sku=B200 level=7.25,units=3i 1700000002000\n"
)


def test_write_and_query_line_protocol(
    influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    db = unique_name("db_")
    create_database(influxd, db)

    write(influxd, db, LINES)

    assert rows(influxd, db, 'SELECT "level", "units" FROM "stock" WHERE "site" = \'plant1\'') == [
        [1700000000000, 41.5, 12],
        [1700000001000, 40.0, 11],
    ]
    assert rows(influxd, db, 'SELECT count("level") FROM "stock"') == [[0, 3]]


def test_data_survives_kill_9_and_restart(
    fresh_influxd: Callable[..., InfluxServer], unique_name: Callable[[str], str]
) -> None:
    server = fresh_influxd()
    db = unique_name("db_")
    create_database(server, db)
    write(server, db, LINES)
    port = server.port

    server.kill()  # no flush, no snapshot: only the WAL has the points
    assert not server.is_running()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/ping", timeout=1)

    server.restart()
    assert server.port == port
    assert rows(server, db, 'SELECT count("level") FROM "stock"') == [[0, 3]]
    write(server, db, "stock,site=plant3,sku=C300 level=1.0,units=1i 1700000003000\n")
    assert rows(server, db, 'SELECT count("level") FROM "stock"') == [[0, 4]]


def test_auth_requires_credentials(fresh_influxd: Callable[..., InfluxServer]) -> None:
    server = fresh_influxd(auth=True)
    assert server.credentials is not None

    assert query(server, "SHOW DATABASES").status_code == 401
    assert query(server, "SHOW DATABASES", auth=(server.admin_user, "wrong")).status_code == 401
    assert query(server, "SHOW DATABASES", auth=server.credentials).status_code == 200

    # After a restart the admin already exists: start() must accept that.
    server.restart()
    assert query(server, "SHOW DATABASES").status_code == 401
    assert query(server, "SHOW DATABASES", auth=server.credentials).status_code == 200


def test_restart_keeps_its_port_and_reports_a_stolen_one(
    fresh_influxd: Callable[..., InfluxServer],
) -> None:
    """Clients hold the URL, so restart() must fail loudly rather than move."""
    server = fresh_influxd()
    server.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((server.host, server.port))
        squatter.listen()

        with pytest.raises(ServiceStartError) as excinfo:
            server.start(timeout=10)

    assert excinfo.value.service == "influxd"
    assert "address already in use" in excinfo.value.log_tail
    assert not server.is_running()
