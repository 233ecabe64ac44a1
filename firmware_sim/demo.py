"""``firmware-sim demo``: the whole system on one machine, each part its own process.

Starts Mosquitto and influxd (``stack.LocalStack``), the simulated plant of the default
scenario (``firmware-sim run``: Modbus TCP, OPC UA, MES HTTP, and a smart sensor publishing
straight to the broker, with ground truth in the work folder), an edge agent reading two
Modbus units (``edge-agent run``) and the cloud service
(``cloud-service run``), each with a generated config in a temporary folder, then reports how
many readings InfluxDB holds until Ctrl-C (or ``--duration``). Separate processes, because
that is how they run in production: the demo exercises the same CLIs and configs a user writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from firmware_sim.plan_export import plan_toml
from firmware_sim.scenario import default_scenario
from firmware_sim.stack import LocalStack, free_ports

SITE, GATEWAY, DATABASE = "demo-plant", "gw-01", "flightdeck"
SIGNAL = "wh2.a113.level"


def _edge_config(mqtt_port: int, modbus_port: int, mes_port: int, spool_dir: Path) -> str:
    return f"""\
site = "{SITE}"
gateway = "{GATEWAY}"

[spool]
path = "{spool_dir / "spool.db"}"

[status]
port = 0

[broker]
host = "127.0.0.1"
port = {mqtt_port}

[batching]
max_readings = 50
max_age_s = 1.0

[[sources]]
type = "modbus"
id = "plc1"
host = "127.0.0.1"
port = {modbus_port}
unit_id = 1

[[sources]]
type = "modbus"
id = "plc2"
host = "127.0.0.1"
port = {modbus_port}
unit_id = 2

[[sources]]
type = "http"
id = "mes"
url = "http://127.0.0.1:{mes_port}/api/v1/counts?line=line3"

[[signals]]
id = "{SIGNAL}"
source = "plc1"
address = 0
data_type = "float32"
kind = "stock_level"
unit = "pcs"
sku = "A-113"
location = "W2"
period_s = 1.0

[[signals]]
id = "wh2.b220.weight"
source = "plc1"
address = 4
data_type = "float32"
word_order = "little"
kind = "stock_level"
unit = "kg"
sku = "B-220"
location = "W2"
period_s = 1.0

[[signals]]
id = "line3.count"
source = "plc2"
address = 0
data_type = "uint16"
kind = "production_count"
unit = "pcs"
line = "line3"
period_s = 1.0

# the MES's good count per SKU: line3 makes A-113 and B-220 on one PLC counter. The MES lists
# a line's products in the scenario's order: A-113 first (a JSON Pointer selects by position)
[[signals]]
id = "mes.line3.A-113.good"
source = "mes"
field = "/counts/0/good"
kind = "production_count"
unit = "pcs"
line = "line3"
sku = "A-113"
location = "W2"
period_s = 60.0

[[signals]]
id = "mes.line3.B-220.good"
source = "mes"
field = "/counts/1/good"
kind = "production_count"
unit = "pcs"
line = "line3"
sku = "B-220"
location = "W2"
period_s = 60.0

[[signals]]
id = "line3.temperature"
source = "plc2"
address = 10
data_type = "int16"
scale = 0.1
kind = "sensor"
unit = "degC"
line = "line3"
period_s = 5.0
"""


def _cloud_config(mqtt_port: int, influx_url: str, workdir: Path, api_port: int) -> str:
    return f"""\
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
client_id = "demo-cloud-ingest"

[influx]
url = "{influx_url}"
database = "{DATABASE}"

[metadata]
url = "sqlite+aiosqlite:///{workdir / "metadata.sqlite"}"

[api]
port = {api_port}
allow_unauthenticated_read = true   # the demo listens on 127.0.0.1 only
"""


def _script(name: str) -> list[str]:
    """The console script installed beside this interpreter, else ``python -m``."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return [str(candidate)]
    module = {"edge-agent": "edge_agent.cli", "cloud-service": "cloud_service.cli"}[name]
    return [sys.executable, "-m", module]


def _pump(prefix: str, stream: IO[str], sink: IO[str]) -> None:
    for line in stream:
        sink.write(f"[{prefix}] {line}")
        sink.flush()


@contextlib.contextmanager
def _process(name: str, argv: list[str], log: IO[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(name, proc.stdout, log), daemon=True).start()
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stored_readings(influx_url: str) -> int:
    """How many stock-level points InfluxDB holds (0 before the first write)."""
    try:
        response = httpx.get(
            f"{influx_url}/query",
            params={"db": DATABASE, "q": "SELECT count(value) FROM stock_level"},
            timeout=5,
        )
        series = response.json()["results"][0].get("series", [])
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return 0
    return int(series[0]["values"][0][1]) if series else 0


def run_demo(duration_s: float | None, log: IO[str] = sys.stdout) -> int:
    """Run until Ctrl-C or ``duration_s``; returns the number of readings stored."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with tempfile.TemporaryDirectory(prefix="flightdeck-demo-") as tmp:
            workdir = Path(tmp)
            return _run(workdir, duration_s, stop, log)
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(workdir: Path, duration_s: float | None, stop: threading.Event, log: IO[str]) -> int:
    with LocalStack(workdir / "stack") as stack:
        modbus_port, mes_port, opcua_port = free_ports(3)
        edge_cfg = workdir / "edge.toml"
        edge_cfg.write_text(_edge_config(stack.mqtt_port, modbus_port, mes_port, workdir / "spool"))
        api_port = free_ports(1)[0]
        cloud_cfg = workdir / "cloud.toml"
        cloud_cfg.write_text(_cloud_config(stack.mqtt_port, stack.influx_url, workdir, api_port))
        plan = workdir / "plan.toml"  # the scenario's S&OP plan, for the cloud's plan figures
        plan.write_text(
            plan_toml(default_scenario(), seed=1, start_ms=int(time.time() * 1000), days=28)
        )
        subprocess.run(
            [*_script("cloud-service"), "plans", "import", str(plan), "--config", str(cloud_cfg)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        truth = workdir / "truth.jsonl"
        sim = [
            *[sys.executable, "-m", "firmware_sim.cli", "run", "--seed", "1"],
            *["--modbus-port", str(modbus_port), "--mes-port", str(mes_port)],
            *["--opcua-port", str(opcua_port), "--mqtt", f"127.0.0.1:{stack.mqtt_port}"],
            *["--truth", str(truth)],
        ]
        with (
            _process("sim", sim, log),
            _process("cloud", [*_script("cloud-service"), "run", "--config", str(cloud_cfg)], log),
            _process("edge", [*_script("edge-agent"), "run", str(edge_cfg)], log),
        ):
            query = json.dumps("SELECT * FROM stock_level ORDER BY time DESC LIMIT 5")
            print(
                f"""
Flightdeck demo is running (Ctrl-C stops everything).
  MQTT broker : 127.0.0.1:{stack.mqtt_port}   watch it:
                mosquitto_sub -h 127.0.0.1 -p {stack.mqtt_port} -t 'flightdeck/#' -v
  InfluxDB    : {stack.influx_url}   database "{DATABASE}", e.g.:
                curl -sG {stack.influx_url}/query --data-urlencode db={DATABASE} \\
                     --data-urlencode q={query}
  plant (sim) : Modbus TCP 127.0.0.1:{modbus_port} (units 1, 2; `firmware-sim map` lists them)
                OPC UA opc.tcp://127.0.0.1:{opcua_port}/flightdeck/sim
                MES    curl -s http://127.0.0.1:{mes_port}/api/v1/lines
                smart sensor ss-w1-01 publishes straight to the broker
  cloud API   : http://127.0.0.1:{api_port}/api/v1/alerts   (docs: /api/v1/docs)
                live alerts: curl -sN http://127.0.0.1:{api_port}/api/v1/alerts/stream
  truth       : {truth} (injected faults, stockouts, plan deviations)
  configs     : {edge_cfg} (edge agent), {cloud_cfg} (cloud service)
""",
                file=log,
                flush=True,
            )
            started = time.monotonic()
            count = 0
            while not stop.wait(5.0):
                count = stored_readings(stack.influx_url)
                print(
                    f"demo: {count} stock-level readings stored in InfluxDB", file=log, flush=True
                )
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    break
            count = stored_readings(stack.influx_url)
    print(f"demo: stopped; {count} readings were stored", file=log, flush=True)
    return count
