"""Edge agent footprint and throughput (issue 5, section 8), each with a baseline from the same run.

1. Durable spool writes (in process): readings/s committed with ``synchronous=FULL`` as the agent
   commits (one COMMIT per event-loop turn, here 10 batches of 100), and one COMMIT per batch.
   Baseline: the same bytes appended to a plain file with one ``fsync`` per commit.
2. Steady state: ``edge-agent run`` as its own process reading 1,000 signals at 1 Hz, 500 from a
   Modbus TCP server (4 requests of 125 registers) and 500 from an HTTP/JSON endpoint, publishing
   to a real Mosquitto; a minimal acker plays the cloud (so the spool stays small, as in
   production). RSS and CPU % of one core of the agent process over a window.
   Baseline: an idle interpreter, and one that only imports what the agent imports.
3. Cold start: process spawn to the status page showing every signal read once.
   Baseline: spawn to an interpreter that imported the agent's modules.
4. Replay after an outage: a spool holding an old boot's backlog is drained by a fresh agent
   (live data flowing meanwhile) through Mosquitto to the acker, no rate limit; readings/s from
   spawn to the backlog acked. Baseline: the same batches published straight with paho (no
   spool, no agent) to the same broker and acker.

Run: ``.venv/bin/python bench/bench_edge.py`` (about 2 minutes; ``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.spool.store import SpoolStore
from edge_agent.status_server import fetch_status
from firmware_sim.stack import MosquittoServer, free_port
from shared.codec import encode
from shared.messages import Ack, Reading, TelemetryBatch
from shared.topics import TopicScheme

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
N_MODBUS = N_HTTP = 500
T0 = int(time.time() * 1000)
_enc = msgspec.json.Encoder().encode


def readings(n: int, start: int = 0) -> list[Reading]:
    return [Reading(f"s{(start + i) % 1000}", T0 + start + i, float(i)) for i in range(n)]


# -- 1. spool writes --------------------------------------------------------------------------


def bench_spool(tmp: Path, total: int) -> dict[str, float]:
    payload = _enc(readings(100))
    commits = total // 1000
    raw = tmp / "raw.bin"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t = time.perf_counter()
    for _ in range(commits):
        for _ in range(10):
            os.write(fd, payload)
        os.fsync(fd)
    baseline = commits * 1000 / (time.perf_counter() - t)
    os.close(fd)
    out = {"baseline: file append + fsync, 1000 readings/fsync": baseline}
    for per_commit in (10, 1):
        store = SpoolStore(tmp / f"spool{per_commit}.db")
        o = store.begin_boot(f"b{per_commit}", T0)
        batches = commits * 10 if per_commit == 10 else commits * 2
        t = time.perf_counter()
        for seq in range(1, batches + 1):
            store.put_batch(
                o, seq, payload, 100, closed=True, historical=False, clock_step_ms=0, created_ms=T0
            )
            if seq % per_commit == 0:
                store.commit()
        rate = batches * 100 / (time.perf_counter() - t)
        store.close()
        out[f"spool FULL, {per_commit * 100} readings/COMMIT"] = rate
    return out


# -- plant: Modbus and HTTP servers, an acker -------------------------------------------------


class Plant:
    """500 Modbus registers and 500 JSON fields that change every second."""

    def __init__(self) -> None:
        self.modbus_port = free_port()
        self.http_port = free_port()
        self._registers = [0] * N_MODBUS
        self._tick = 0

    async def _on_access(
        self, fc: int, start: int, address: int, count: int, regs: list[int], _v: object
    ) -> None:
        regs[-start : -start + N_MODBUS] = self._registers

    async def run(self, ready: threading.Event, stop: asyncio.Event) -> None:
        device = SimDevice(
            id=1,
            simdata=[SimData(0, count=N_MODBUS, values=0, datatype=DataType.REGISTERS)],
            action=self._on_access,  # type: ignore[arg-type]
        )
        modbus = ModbusTcpServer(device, address=("127.0.0.1", self.modbus_port))
        await modbus.serve_forever(background=True)
        http = await asyncio.start_server(self._http, "127.0.0.1", self.http_port)
        ready.set()
        while not stop.is_set():
            self._tick += 1
            self._registers = [(self._tick + i) & 0xFFFF for i in range(N_MODBUS)]
            await asyncio.sleep(1)
        http.close()
        await modbus.shutdown()  # type: ignore[no-untyped-call]

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                body = json.dumps({f"f{i}": self._tick * 0.5 + i for i in range(N_HTTP)}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


class _Envelope(msgspec.Struct):
    gateway: str
    boot: str
    seq: int
    first_unacked: int = 1


class Acker:
    """The cloud's end-to-end ack, minus the database: contiguous seq per gateway and boot."""

    def __init__(self, broker: MosquittoServer) -> None:
        self._decoder = msgspec.json.Decoder(_Envelope)
        self._state: dict[tuple[str, str], tuple[int, set[int]]] = {}
        self._lock = threading.Lock()
        self.batches = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("flightdeck/v1/+/+/telemetry", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        env = self._decoder.decode(msg.payload)
        with self._lock:
            self.batches += 1
            acked, pending = self._state.get((env.gateway, env.boot), (0, set()))
            acked = max(acked, env.first_unacked - 1)
            pending.add(env.seq)
            while acked + 1 in pending:
                acked += 1
                pending.discard(acked)
            self._state[(env.gateway, env.boot)] = (acked, pending)
        site = msg.topic.split("/")[2]
        ack = Ack(gateway=env.gateway, boot=env.boot, seq=acked, ts=int(time.time() * 1000))
        client.publish(TopicScheme().topic(site, env.gateway, "ack"), encode(ack), 1, retain=True)  # type: ignore[arg-type]

    def acked(self, gateway: str, boot: str) -> int:
        with self._lock:
            return self._state.get((gateway, boot), (0, set()))[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def config(
    tmp: Path, plant: Plant, broker: MosquittoServer, status_port: int, **extra: str
) -> Path:
    lines = [
        'site = "bench"',
        'gateway = "gw-bench"',
        f'[broker]\nhost = "{broker.host}"\nport = {broker.port}',
        f'[spool]\npath = "{tmp / "spool.db"}"',
        f"[status]\nport = {status_port}",
        "[delivery]\n" + "\n".join(f"{k} = {v}" for k, v in extra.items()),
        f'[[sources]]\ntype = "modbus"\nid = "plc"\nhost = "127.0.0.1"\nport = {plant.modbus_port}',
        f'[[sources]]\ntype = "http"\nid = "mes"\nurl = "http://127.0.0.1:{plant.http_port}/x"',
    ]
    for i in range(N_MODBUS):
        lines.append(
            f'[[signals]]\nid = "m{i}"\nsource = "plc"\naddress = {i}\ndata_type = "uint16"\n'
            'kind = "sensor"\nperiod_s = 1.0'
        )
    for i in range(N_HTTP):
        lines.append(
            f'[[signals]]\nid = "h{i}"\nsource = "mes"\nfield = "f{i}"\n'
            'kind = "sensor"\nperiod_s = 1.0'
        )
    path = tmp / "gw.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def status(port: int) -> object:
    return asyncio.run(fetch_status("127.0.0.1", port, 2.0))


def wait_status(port: int, ok: object, within_s: float) -> object:
    deadline = time.monotonic() + within_s
    while True:
        try:
            s = status(port)
            if ok(s):  # type: ignore[operator]
                return s
        except (OSError, TimeoutError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the agent did not get there")
        time.sleep(0.01)


def measure_idle(args: list[str], window_s: float) -> tuple[float, float]:
    proc = spawn(args)
    time.sleep(1.5)
    c0 = cpu_s(proc.pid)
    time.sleep(window_s)
    cpu = (cpu_s(proc.pid) - c0) / window_s * 100
    rss = rss_mb(proc.pid)
    proc.kill()
    proc.wait()
    return rss, cpu


IMPORTS = (
    "import edge_agent.runner, edge_agent.sources.modbus, edge_agent.sources.http, sqlite3, time;"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--agent-python",
        help="interpreter that runs the agent, e.g. a venv with only the `edge` extra "
        "installed, as on a gateway (default: this one)",
    )
    args = parser.parse_args()
    window = 10.0 if args.quick else 30.0
    backlog = 100_000 if args.quick else 300_000
    tmp = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    py = args.agent_python or sys.executable
    print(f"bench_edge: {os.cpu_count()} cores, python {sys.version.split()[0]}, work dir {tmp}")
    print(f"agent interpreter: {py}\n")

    print("1. durable spool writes (readings/s)")
    for name, rate in bench_spool(tmp, 200_000 if args.quick else 500_000).items():
        print(f"   {name:52s} {rate:12,.0f}")

    broker = MosquittoServer(tmp / "mosquitto")
    broker.start()
    plant = Plant()
    ready, stop = threading.Event(), asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(plant.run(ready, stop),), daemon=True
    )
    thread.start()
    ready.wait(10)
    acker = Acker(broker)
    try:
        status_port = free_port()
        cfg = config(tmp, plant, broker, status_port)

        print("\n3. cold start (s)")
        t = time.perf_counter()
        subprocess.run([py, "-c", IMPORTS], cwd=REPO, check=True)
        base_start = time.perf_counter() - t
        t = time.perf_counter()
        agent = spawn([py, "-m", "edge_agent.cli", "run", str(cfg)])
        wait_status(status_port, lambda s: s.readings_total >= 1000, 30)
        cold = time.perf_counter() - t
        print(f"   {'baseline: spawn + import the agent modules':52s} {base_start:12.2f}")
        print(f"   {'edge-agent run: spawn to 1,000 signals read':52s} {cold:12.2f}")

        print(f"\n2. steady state, 1,000 signals at 1 Hz (Modbus 500 + HTTP 500), {window:.0f} s")
        time.sleep(5)
        c0, w0 = cpu_s(agent.pid), time.monotonic()
        s0 = status(status_port)
        time.sleep(window)
        cpu = (cpu_s(agent.pid) - c0) / (time.monotonic() - w0) * 100
        s1 = status(status_port)
        rss, hwm = rss_mb(agent.pid), rss_mb(agent.pid, "VmHWM")
        rate = (s1.readings_total - s0.readings_total) / window  # type: ignore[attr-defined]
        idle_rss, idle_cpu = measure_idle([py, "-c", "import time; time.sleep(60)"], 3)
        imp_rss, imp_cpu = measure_idle([py, "-c", IMPORTS + " time.sleep(60)"], 3)
        row = "   {:52s} {:7.1f} {:6.2f}"
        print(row.format("baseline: idle interpreter RSS (MB) / CPU %", idle_rss, idle_cpu))
        print(row.format("baseline: interpreter + agent imports RSS / CPU %", imp_rss, imp_cpu))
        print(f"   {'edge agent RSS (MB) / CPU % of one core':52s} {rss:7.1f} {cpu:6.2f}")
        print(f"   {'edge agent peak RSS (VmHWM, MB)':52s} {hwm:7.1f}")
        print(f"   {'readings/s read':52s} {rate:7.0f}")
        left = (s1.spool.batches, s1.spool.readings)  # type: ignore[attr-defined]
        print(f"   {'spool at the end: batches / readings':52s} {left[0]:7d} {left[1]:6d}")
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)

        print(f"\n4. replay after an outage: {backlog:,} readings of an old boot (readings/s)")
        store = SpoolStore(tmp / "spool.db")
        o = store.begin_boot("old-boot", T0)
        for seq in range(1, backlog // 100 + 1):
            store.put_batch(
                o,
                seq,
                _enc(readings(100, seq * 100)),
                100,
                closed=True,
                historical=False,
                clock_step_ms=0,
                created_ms=T0,
            )
        store.commit()
        store.close()
        replay_cfg = config(
            tmp,
            plant,
            broker,
            status_port,
            catchup_readings_per_s="1e9",
            catchup_burst_readings="100000",
            window="500",
        )
        t = time.perf_counter()
        agent = spawn([py, "-m", "edge_agent.cli", "run", str(replay_cfg)])
        while acker.acked("gw-bench", "old-boot") < backlog // 100:
            time.sleep(0.005)
        replay = backlog / (time.perf_counter() - t)
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(500)
        client.max_queued_messages_set(0)
        client.connect(broker.host, broker.port)
        client.loop_start()
        topic = TopicScheme().topic("bench", "gw-raw", "telemetry")
        payloads = [
            encode(
                TelemetryBatch(
                    gateway="gw-raw", boot="raw", seq=seq, readings=readings(100, seq * 100)
                )
            )
            for seq in range(1, backlog // 100 + 1)
        ]
        t = time.perf_counter()
        for p in payloads:
            client.publish(topic, p, qos=1)
        while acker.acked("gw-raw", "raw") < backlog // 100:
            time.sleep(0.005)
        raw = backlog / (time.perf_counter() - t)
        client.disconnect()
        client.loop_stop()
        print(f"   {'baseline: paho publish of the same batches, no spool':52s} {raw:12,.0f}")
        print(f"   {'edge agent: spawn to backlog acked (live data on)':52s} {replay:12,.0f}")
    finally:
        acker.close()
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        broker.stop()
    print("\ngoals: RSS <= 40 MB, CPU <= 5 %, spool >= 20,000/s, replay >= 50,000/s,", end="")
    print(" cold start <= 2 s")


if __name__ == "__main__":
    main()
