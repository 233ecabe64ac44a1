"""``firmware-sim`` as a user runs it: every subcommand in a real process."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pymodbus.client import AsyncModbusTcpClient
from sim_scenarios import SMALL

from firmware_sim.cli import build_parser
from firmware_sim.commands import parse_time
from firmware_sim.errors import PlantParameterError
from firmware_sim.stack import InfluxServer, MosquittoServer, free_port

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware_sim.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    for command in ("run", "backfill", "fleet", "validate", "map", "demo"):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([command, "--help"])
        assert info.value.code == 0
    result = cli("run", "--help")
    assert "examples:" in result.stdout
    assert "--speed" in result.stdout


def test_validate_reports_the_field_and_line(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(SMALL)
    result = cli("validate", str(good))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "lines: L1" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace("mttr_min = 30", "mttr_min = 0"))
    result = cli("validate", str(bad))
    line = 1 + next(i for i, t in enumerate(SMALL.splitlines()) if t.startswith("mttr_min"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"firmware-sim: {bad}:{line}: lines[0].mttr_min: must be > 0, got 0"
    )
    assert "Traceback" not in result.stderr


def test_map_lists_registers_nodes_and_topics() -> None:
    result = cli("map")
    assert result.returncode == 0
    assert "unit 1:" in result.stdout
    assert "wh2.a113.level" in result.stdout
    assert "ns=2;s=line3.count (UInt16)" in result.stdout
    assert "flightdeck/v1/demo-plant/ss-w1-01/telemetry" in result.stdout


async def test_run_serves_until_sigterm(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_sim.cli",
        "run",
        "--modbus-port=0",
        "--mes-port=0",
        "--speed=3600",
        "--start=2026-01-05T08:00:00Z",
        f"--truth={truth}",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1] != "firmware-sim: ready":
            lines.append((await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip())
        text = "\n".join(lines)
        assert "speed 3600x, start 2026-01-05T08:00:00.000Z" in text
        modbus_port = int(
            re.search(r"modbus listening on 127\.0\.0\.1:(\d+) \(units 1, 2\)", text).group(1)
        )  # type: ignore[union-attr]
        mes_url = re.search(r"mes listening on (\S+)", text).group(1)  # type: ignore[union-attr]
        assert "opcua" not in text  # only the servers asked for
        async with httpx.AsyncClient(base_url=mes_url) as http:
            first = (await http.get("/clock")).json()
            await asyncio.sleep(0.5)
            second = (await http.get("/clock")).json()
        gained = (second["sim_time_ms"] - first["sim_time_ms"]) / 1000
        assert 0.4 * 3600 < gained < 1.0 * 3600  # half a real second: about half an hour
        client = AsyncModbusTcpClient("127.0.0.1", port=modbus_port, timeout=2, retries=0)
        assert await client.connect()
        rr = await client.read_holding_registers(0, count=4, device_id=1)
        client.close()
        assert not rr.isError()
        assert rr.registers[2] * 65536 + rr.registers[3] > 0  # the level x100
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    assert records[0]["type"] == "run"
    assert records[0]["start_ms"] == 1_767_600_000_000


def test_run_without_a_broker_fails_cleanly() -> None:
    result = cli("run", "--mes-port=0", f"--mqtt=127.0.0.1:{free_port()}", "--duration=1")
    assert result.returncode == 1
    assert result.stderr.startswith("firmware-sim: mqtt server 127.0.0.1:")
    assert "Traceback" not in result.stderr


def test_backfill_command(
    influxd: InfluxServer, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    truth = tmp_path / "truth.jsonl"
    database = unique_name("cli")
    result = cli(
        "backfill",
        "--days=1",
        "--end=2026-01-06",
        f"--influx-url={influxd.url}",
        f"--database={database}",
        "--sample-period=600",
        f"--truth={truth}",
    )
    assert result.returncode == 0, result.stderr
    points = int(re.search(r"backfill: ([\d,]+) points", result.stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert points == 10 * 144  # ten signals, a sample every 600 s for a day
    assert "100.0%" in result.stderr  # the progress bar finished
    assert json.loads(truth.read_text().splitlines()[0])["type"] == "run"
    answer = httpx.get(
        f"{influxd.url}/query",
        params={"db": database, "q": "SELECT count(q) FROM stock_level"},
        timeout=10,
    ).json()
    assert answer["results"][0]["series"][0]["values"][0][1] == 5 * 144


def test_fleet_command(mosquitto: MosquittoServer) -> None:
    result = cli(
        "fleet",
        f"--mqtt={mosquitto.host}:{mosquitto.port}",
        "--gateways=5",
        "--signals=10",
        "--period=0.2",
        "--duration=1",
        "--site=cli-fleet",
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"fleet: ([\d,]+) messages \(([\d,]+) readings\) acknowledged", result.stdout)
    assert match, result.stdout
    assert int(match.group(2).replace(",", "")) == 10 * int(match.group(1).replace(",", "")) >= 100


def test_start_and_end_times() -> None:
    now = 1_767_600_000_000
    assert parse_time("now", now) == now
    assert parse_time("-28d", now) == now - 28 * 86_400_000
    assert parse_time("-1.5h", now) == now - 5_400_000
    assert parse_time("2026-01-05", now) == 1_767_571_200_000
    assert parse_time("2026-01-05T08:00:00Z", now) == now
    assert parse_time("2026-01-05T09:00:00+01:00", now) == now
    with pytest.raises(PlantParameterError, match="ISO"):
        parse_time("yesterday", now)
