"""Ingest end to end on this machine: publishers -> Mosquitto -> ingest -> influxd, measured
beside influxd's own ceiling and a naive pipeline, all in one run on one private stack.

* ceiling: raw line-protocol bodies of 10,000 points POSTed to /write (1 and 2 writers);
* ours: ``cloud-service run`` worker process(es) on a shared subscription, fed by a publisher
  process that plays many gateways (QoS 1, 100-reading batches, births first); the clock
  stops when every gateway has received the end-to-end ack of its last batch (stored);
* naive: paho (auto-ack) + json.loads + one formatted, escaped line per point + one
  synchronous HTTP write per message;
* latency: publish -> end-to-end ack per batch, p50/p99, with the publisher paced at a
  fixed fraction of the throughput just measured.

    python bench/bench_ingest.py [--readings 2000000] [--workers 1,2] [--quick]

Every process competes for the same 2 cores: influxd is the bottleneck (field notes: ~2.2 µs
of CPU per point), and the publisher, Mosquitto and ingest take their share of the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import paho.mqtt.client as mqtt

from cloud_service.storage.line_protocol import escape_tag_value
from firmware_sim.stack import InfluxServer, MosquittoOptions, MosquittoServer
from shared.codec import encode
from shared.messages import Ack, Birth, Reading, SignalKind, SignalSpec, TelemetryBatch
from shared.topics import Channel, TopicScheme

SCHEME = TopicScheme()
SITE = "bench"
POINTS_PER_BODY = 10_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a live process has used so far (Linux /proc)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- workload ------------------------------------------------------------------------------


def signal_id(i: int) -> str:
    return f"wh{i % 7}.sku-{i:05d}.level"


def births(gateways: int, signals: int) -> list[tuple[str, bytes]]:
    out = []
    for g in range(gateways):
        gw = f"gw{g:03d}"
        specs = [
            SignalSpec(
                id=signal_id(i), kind=SignalKind.STOCK_LEVEL, unit="pcs",
                sku=f"sku-{i:05d}", location=f"wh{i % 7}", period_s=1.0,
            )
            for i in range(signals)
        ]  # fmt: skip
        b = Birth(
            gateway=gw, site=SITE, boot="b1", agent_version="bench", config_hash="x",
            started_ms=now_ms(), signals=specs,
        )  # fmt: skip
        out.append((SCHEME.topic(SITE, gw, Channel.BIRTH), encode(b)))
    return out


def batches(
    gateways: int, signals: int, per_batch: int, total: int, t0: int, boot: str
) -> list[tuple[str, int, bytes]]:
    """(gateway, seq, payload), gateways interleaved; every (signal, ts) is distinct."""
    per_gateway = total // (gateways * per_batch)
    out = []
    for seq in range(1, per_gateway + 1):
        for g in range(gateways):
            gw = f"gw{g:03d}"
            first = (seq - 1) * per_batch
            readings = [
                Reading(signal_id((first + i) % signals), t0 + (first + i) // signals, 100.0 + i)
                for i in range(per_batch)
            ]
            batch = TelemetryBatch(gateway=gw, boot=boot, seq=seq, readings=readings)
            out.append((gw, seq, encode(batch)))
    return out


# -- roles run as separate processes -------------------------------------------------------


def role_publish(args: argparse.Namespace) -> None:
    """Play the gateways: publish, then wait for every last batch's end-to-end ack."""
    t0 = now_ms() - 3_600_000 + args.offset_ms
    work = batches(args.gateways, args.signals, args.batch, args.readings, t0, args.boot)
    last = {gw: seq for gw, seq, _ in work}
    sent_at: dict[tuple[str, int], float] = {}
    acked_at: dict[tuple[str, int], float] = {}
    high: dict[str, int] = {}
    done = threading.Event()
    lock = threading.Lock()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        ack = msgspec.json.decode(msg.payload, type=Ack)
        if ack.boot != args.boot:
            return
        t = time.time()
        with lock:
            for seq in range(high.get(ack.gateway, 0) + 1, ack.seq + 1):
                acked_at[(ack.gateway, seq)] = t
            high[ack.gateway] = max(high.get(ack.gateway, 0), ack.seq)
            if all(high.get(gw, 0) >= s for gw, s in last.items()):
                done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_message = on_message
    client.connect("127.0.0.1", args.port)
    client.subscribe(SCHEME.subscription(Channel.ACK, site=SITE), 1)
    client.loop_start()
    time.sleep(0.3)
    if args.births:
        for topic, payload in births(args.gateways, args.signals):
            client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    interval = 1.0 / args.rate if args.rate else 0.0
    start = time.time()
    pending: list[mqtt.MQTTMessageInfo] = []
    for i, (gw, seq, payload) in enumerate(work):
        if interval:
            delay = start + i * interval - time.time()
            if delay > 0:
                time.sleep(delay)
        sent_at[(gw, seq)] = time.time()
        info = client.publish(SCHEME.topic(SITE, gw, Channel.TELEMETRY), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SystemExit(f"publish refused: rc={info.rc}")
        pending.append(info)
        if len(pending) >= 800:  # keep paho's in-flight window bounded (QoS 1 mids)
            pending.pop(0).wait_for_publish(60)
    published = time.time()
    if args.births:  # warm-up: until the workers have subscribed nobody receives; repeat
        deadline = time.time() + args.timeout
        while not done.wait(0.5) and time.time() < deadline:
            for gw, _seq, payload in work:
                client.publish(SCHEME.topic(SITE, gw, Channel.TELEMETRY), payload, qos=1)
    ok = done.wait(args.timeout)
    finished = time.time()
    client.disconnect()
    client.loop_stop()
    lat = sorted(acked_at[k] - sent_at[k] for k in sent_at if k in acked_at)
    result = {
        "readings": len(work) * args.batch,
        "complete": ok,
        "elapsed": finished - start,
        "publish_elapsed": published - start,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None,
        "start": start,
    }
    Path(args.out).write_text(json.dumps(result))


def role_naive(args: argparse.Namespace) -> None:
    """The naive pipeline: what a first attempt looks like."""
    http = httpx.Client(base_url=args.influx, timeout=30)
    http.post("/query", data={"q": f'CREATE DATABASE "{args.db}"'})
    state = {"readings": 0, "last": 0.0}
    done = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        _, site, gw, _ = msg.topic.rsplit("/", 3)
        doc = json.loads(msg.payload)
        lines = []
        for sig, ts, value, quality in doc["readings"]:
            tags = ",".join(
                f"{k}={escape_tag_value(v)}"
                for k, v in (("gateway", gw), ("signal", sig), ("site", site))
            )
            lines.append(f"stock_level,{tags} value={float(value)},q={int(quality)}i {ts}")
        http.post("/write", params={"db": args.db, "precision": "ms"}, content="\n".join(lines))
        state["readings"] += len(lines)
        state["last"] = time.time()
        if state["readings"] >= args.readings:
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", args.port)
    client.subscribe(SCHEME.subscription(Channel.TELEMETRY, site=SITE), 1)
    client.loop_start()
    Path(args.out + ".ready").write_text("1")
    done.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    Path(args.out).write_text(json.dumps(state))


# -- the orchestrating process -------------------------------------------------------------


def run_role(role: str, out: Path, **kw: Any) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, "--role", role, "--out", str(out)]
    for key, value in kw.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return subprocess.Popen(argv)


def ceiling(influx: str, bodies: list[bytes], writers: int, db: str) -> float:
    async def go() -> float:
        async with httpx.AsyncClient(base_url=influx, timeout=60) as http:
            await http.post("/query", data={"q": f'CREATE DATABASE "{db}"'})
            queue = list(bodies)
            start = time.perf_counter()

            async def writer() -> None:
                while queue:
                    body = queue.pop()
                    r = await http.post(
                        "/write", params={"db": db, "precision": "ms"}, content=body
                    )
                    r.raise_for_status()

            await asyncio.gather(*(writer() for _ in range(writers)))
            return len(bodies) * POINTS_PER_BODY / (time.perf_counter() - start)

    return asyncio.run(go())


def line_bodies(n_points: int, signals: int, gateways: int) -> list[bytes]:
    t0 = now_ms() - 7_200_000
    bodies = []
    for b in range(n_points // POINTS_PER_BODY):
        lines = []
        for i in range(POINTS_PER_BODY):
            k = b * POINTS_PER_BODY + i
            sig, gw = k % signals, (k // signals) % gateways
            lines.append(
                f"stock_level,gateway=gw{gw:03d},location=wh{sig % 7},signal={signal_id(sig)},"
                f"site={SITE},sku=sku-{sig:05d} value={100.0 + i},q=0i "
                f"{t0 + k // (signals * gateways)}"
            )
        bodies.append("\n".join(lines).encode())
    return bodies


def worker_config(
    workdir: Path, name: str, mqtt_port: int, influx: str, db: str, group: str
) -> Path:
    """One worker's settings. Each run has its own share group: the persistent sessions of
    the previous run's (stopped) workers would otherwise keep taking their share."""
    path = workdir / f"{name}.toml"
    path.write_text(
        f"""
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
client_id = "{name}"
share_group = "{group}"
receive_maximum = 3000

[influx]
url = "{influx}"
database = "{db}"
gzip = false

[ingest]
max_points = 10000
max_age_s = 0.05
writes_in_flight = 2
status_log_s = 3600

[metadata]
url = "sqlite+aiosqlite:///{workdir / "meta.sqlite"}"
"""
    )
    return path


def count_points(influx: str, db: str) -> int:
    r = httpx.get(
        f"{influx}/query", params={"db": db, "q": 'SELECT count("value") FROM "stock_level"'},
        timeout=120,
    )  # fmt: skip
    series = r.json()["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def ours(
    stack: dict[str, Any], workers: int, readings: int, rate: float, tag: str
) -> dict[str, Any]:
    workdir: Path = stack["workdir"]
    db = f"ours{tag}"
    procs = []
    log = (workdir / f"workers-{tag}.log").open("ab")
    for w in range(workers):
        cfg = worker_config(
            workdir, f"bench-{tag}-{w}", stack["mqtt"], stack["influx"], db, f"grp-{tag}"
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "cloud_service.cli", "run", "--config", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        )
    try:
        # Warm-up: births and a first small round, until acked (workers subscribed, DB made).
        warm = workdir / f"warm-{tag}.json"
        run_role(
            "publish", warm, port=stack["mqtt"], gateways=stack["gateways"],
            signals=stack["signals"], batch=stack["batch"],
            readings=stack["gateways"] * stack["batch"], births=True, boot=f"warm{tag}",
            timeout=60, rate=0, offset_ms=0,
        ).wait()  # fmt: skip
        out = workdir / f"pub-{tag}.json"
        before = {
            "ingest": sum(cpu_s(p.pid) for p in procs),
            "mosquitto": cpu_s(stack["mqtt_pid"]),
            "influxd": cpu_s(stack["influx_pid"]),
        }
        run_role(
            "publish", out, port=stack["mqtt"], gateways=stack["gateways"],
            signals=stack["signals"], batch=stack["batch"], readings=readings, births=False,
            boot=f"run{tag}", timeout=300, rate=rate, offset_ms=1,
        ).wait()  # fmt: skip
        result: dict[str, Any] = json.loads(out.read_text())
        after = {
            "ingest": sum(cpu_s(p.pid) for p in procs),
            "mosquitto": cpu_s(stack["mqtt_pid"]),
            "influxd": cpu_s(stack["influx_pid"]),
        }
        result["cpu_us_per_reading"] = {
            k: 1e6 * (after[k] - before[k]) / result["readings"] for k in after
        }
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
        log.close()
    result["stored"] = count_points(stack["influx"], db)
    return result


def naive(stack: dict[str, Any], readings: int) -> dict[str, Any]:
    workdir: Path = stack["workdir"]
    out = workdir / "naive.json"
    proc = run_role(
        "naive", out, port=stack["mqtt"], influx=stack["influx"], db="naive",
        readings=readings, timeout=600,
    )  # fmt: skip
    while not Path(str(out) + ".ready").exists():
        time.sleep(0.05)
    time.sleep(0.3)
    pub_out = workdir / "pub-naive.json"
    run_role(
        "publish", pub_out, port=stack["mqtt"], gateways=stack["gateways"],
        signals=stack["signals"], batch=stack["batch"], readings=readings, births=False,
        boot="naive", timeout=1, rate=0, offset_ms=2,
    ).wait()  # fmt: skip
    proc.wait(600)
    pub = json.loads(pub_out.read_text())
    state = json.loads(out.read_text())
    return {"readings": state["readings"], "elapsed": state["last"] - pub["start"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=["publish", "naive"])
    parser.add_argument("--out")
    parser.add_argument("--port", type=int)
    parser.add_argument("--influx")
    parser.add_argument("--db")
    parser.add_argument("--boot", default="b1")
    parser.add_argument("--births", action="store_true")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="messages/s (0: as fast as possible)"
    )
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--offset-ms", type=int, default=0)
    parser.add_argument("--readings", type=int, default=2_000_000)
    parser.add_argument("--naive-readings", type=int, default=300_000)
    parser.add_argument("--gateways", type=int, default=10)
    parser.add_argument("--signals", type=int, default=1000, help="per gateway (series)")
    parser.add_argument("--batch", type=int, default=100, help="readings per MQTT message")
    parser.add_argument("--workers", default="1,2", help="worker process counts to measure")
    parser.add_argument("--latency-load", type=float, default=0.8, help="fraction of throughput")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    if args.role == "publish":
        role_publish(args)
        return
    if args.role == "naive":
        role_naive(args)
        return
    if args.quick:
        args.readings, args.naive_readings = 200_000, 50_000

    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    broker = MosquittoServer(
        workdir / "mosquitto",
        MosquittoOptions(max_queued_messages=0, max_inflight_messages=0, persistence=False),
    )
    influxd = InfluxServer(workdir / "influxd")
    broker.start()
    influxd.start()
    stack = {
        "workdir": workdir, "mqtt": broker.port, "influx": influxd.url,
        "mqtt_pid": broker.pid, "influx_pid": influxd.pid,
        "gateways": args.gateways, "signals": args.signals, "batch": args.batch,
    }  # fmt: skip
    series = args.gateways * args.signals
    print(
        f"# bench_ingest on {platform.node()}: {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load_average()}"
    )
    print(f"# {series:,} series, {args.batch}-reading messages, {args.readings:,} readings per run")
    try:
        bodies = line_bodies(args.readings, args.signals, args.gateways)
        c1 = ceiling(influxd.url, bodies, 1, "ceiling1")
        c2 = ceiling(influxd.url, bodies, 2, "ceiling2")
        ceiling_best = max(c1, c2)
        print(f"influxd ceiling, 1 writer : {c1:>10,.0f} points/s")
        print(f"influxd ceiling, 2 writers: {c2:>10,.0f} points/s")

        nv = naive(stack, args.naive_readings)
        naive_rate = nv["readings"] / nv["elapsed"]
        print(
            f"naive pipeline            : {naive_rate:>10,.0f} readings/s "
            f"({nv['readings']:,} readings)"
        )

        best = 0.0
        for workers in [int(w) for w in args.workers.split(",")]:
            r = ours(stack, workers, args.readings, 0.0, f"w{workers}")
            rate = r["readings"] / r["elapsed"]
            best = max(best, rate)
            print(
                f"ingest, {workers} worker process(es): {rate:>10,.0f} readings/s "
                f"= {rate / ceiling_best:.0%} of the ceiling, {rate / naive_rate:.1f}x naive "
                f"(complete={r['complete']}, stored {r['stored']:,}/{r['readings']:,})"
            )
            cpu = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_us_per_reading"].items())
            print(f"  CPU µs per reading: {cpu}; load average {load_average()}")
            msgs_rate = args.latency_load * rate / args.batch
            lat = ours(stack, workers, args.readings // 2, msgs_rate, f"l{workers}")
            print(
                f"  latency publish->stored (e2e ack) at {args.latency_load * rate:,.0f} "
                "readings/s: "
                f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms "
                f"(complete={lat['complete']}, stored {lat['stored']:,}/{lat['readings']:,})"
            )
        print(
            f"goal: >= 50% of ceiling -> {best / ceiling_best:.0%}; "
            f">= 5x naive -> {best / naive_rate:.1f}x"
        )
    finally:
        influxd.stop()
        broker.stop()


if __name__ == "__main__":
    main()
