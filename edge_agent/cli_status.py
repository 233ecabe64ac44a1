"""``edge-agent status`` and ``edge-agent ack``: talk to the running agent's status page.

When the agent is not running, ``status`` still says what its spool holds, read from the file
in read-only mode (no lock is taken, nothing is written), so an operator can see the backlog
and the drop counters of a stopped gateway.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Final

from edge_agent.config import AgentConfig
from edge_agent.status import render_text, to_json
from edge_agent.status_server import BadRequestError, fetch_status, http_request

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_NOT_RUNNING: Final = 3


def _client_host(config: AgentConfig) -> str:
    host = config.status.host
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 - not binding


def status_command(config: AgentConfig, *, as_json: bool) -> int:
    if not config.status.enabled:
        print("the status page is disabled in this configuration", file=sys.stderr)
        return _offline(config)
    try:
        status = asyncio.run(fetch_status(_client_host(config), config.status.port))
    except (OSError, TimeoutError, BadRequestError, ValueError) as exc:
        print(
            f"agent not reachable on {config.status.host}:{config.status.port} ({exc})",
            file=sys.stderr,
        )
        return _offline(config)
    if as_json:
        sys.stdout.write(to_json(status).decode() + "\n")
    else:
        for line in render_text(status):
            print(line)
    return EXIT_OK


def ack_command(
    config: AgentConfig, alert: str, operator: str, comment: str, token: str | None
) -> int:
    body = json.dumps({"operator": operator, "comment": comment}).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Flightdeck-Token"] = token
    try:
        reply = asyncio.run(
            http_request(
                _client_host(config),
                config.status.port,
                "POST",
                f"/alerts/{alert}/ack",
                body=body,
                headers=headers,
            )
        )
    except BadRequestError as exc:
        print(f"refused ({exc.status}): {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, TimeoutError) as exc:
        print(f"agent not reachable: {exc}; acknowledge again once it runs", file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(f"acknowledged {alert}: {reply.decode()}")
    return EXIT_OK


def _offline(config: AgentConfig) -> int:
    """Print what the spool file holds; exit 3 (not running)."""
    path = Path(config.spool_path)
    if not path.exists():
        print(f"no spool at {path}")
        return EXIT_NOT_RUNNING
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            batches, readings, nbytes = db.execute(
                "SELECT COUNT(*), TOTAL(readings), TOTAL(length(payload)) FROM batches"
            ).fetchone()
            drops = db.execute("SELECT reason, SUM(count) FROM drops GROUP BY reason").fetchall()
            alerts = db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
            pending = db.execute("SELECT COUNT(*) FROM alert_acks").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        print(f"spool {path} unreadable: {exc}")
        return EXIT_NOT_RUNNING
    print(f"agent not running; spool {path}:")
    print(f"  {batches} batch(es), {int(readings)} reading(s), {int(nbytes)} bytes to send")
    print("  drops: " + (", ".join(f"{r} {n}" for r, n in drops) or "none"))
    print(f"  {alerts} active alert(s), {pending} acknowledgement(s) to send")
    return EXIT_NOT_RUNNING
