"""The README's demo command works: every part starts as its own process and data flows."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_stores_readings_and_stops_cleanly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "firmware_sim.cli", "demo", "--duration", "6"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    match = re.search(r"demo: stopped; (\d+) readings were stored", result.stdout)
    assert match, result.stdout[-3000:]
    assert int(match.group(1)) >= 3
    assert "mosquitto_sub -h 127.0.0.1" in result.stdout  # it says where to look
    assert "/api/v1/alerts/stream" in result.stdout  # and where the alerts are
    assert "Traceback" not in result.stdout + result.stderr
