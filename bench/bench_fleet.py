"""Fleet publish rate: what one process sustains for 1,000 gateways x 100 signals over MQTT.

Runs ``firmware_sim.fleet`` against a private Mosquitto from ``firmware_sim.stack`` whose queue
limits are explicit (``max_queued_messages``, ``max_inflight_messages``: the broker default of
1000 drops QoS 1 messages silently, field notes), with a subscriber in a second process that
counts what the broker delivered, so "sustained" means acknowledged *and* delivered, not just
written to a socket. Cases, all in this run, QoS 1, one MQTT connection per gateway:

* batched: each gateway's 100 readings in one message, as fast as the broker acknowledges;
* baseline: one reading per message (what a naive gateway does), as fast as possible;
* nominal: every gateway publishes its 100 readings once a second (100k readings/s offered):
  does one process keep the schedule?

    python bench/bench_fleet.py [--gateways 1000] [--signals 100] [--seconds 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.fleet import Fleet, FleetConfig
from firmware_sim.stack import MosquittoOptions, MosquittoServer

QUEUE_LIMIT = 1_000_000  # per client; far above what a live subscriber lags behind
INFLIGHT_LIMIT = 100


def subscriber(host: str, port: int, topic: str, pipe: Connection) -> None:
    """Count messages and readings delivered on ``topic`` until told to stop."""
    counts = {"messages": 0, "readings": 0}

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        counts["messages"] += 1
        counts["readings"] += msg.payload.count(b"],[") + 1  # readings are [s,t,v,q] arrays

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub", protocol=mqtt.MQTTv311)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: pipe.send("ready")
    client.connect(host, port)
    client.loop_start()
    while True:
        command = pipe.recv()
        if command == "count":
            pipe.send(dict(counts))
        elif command == "stop":
            break
    client.disconnect()
    client.loop_stop()


def run_case(
    server: MosquittoServer, name: str, args: argparse.Namespace, rpm: int, period: float
) -> dict[str, Any]:
    site = f"bench{int(time.time() * 1000) % 10**8}"
    parent, child = mp.Pipe()
    sub = mp.Process(
        target=subscriber,
        args=(server.host, server.port, f"flightdeck/v1/{site}/+/telemetry", child),
        daemon=True,
    )
    sub.start()
    if not (parent.poll(20) and parent.recv() == "ready"):
        raise SystemExit("the subscriber did not start")
    config = FleetConfig(
        host=server.host,
        port=server.port,
        gateways=args.gateways,
        signals=args.signals,
        readings_per_message=rpm,
        period_s=period,
        window=args.window,
        site=site,
    )
    fleet = Fleet(config)
    connect_started = time.monotonic()
    fleet.connect()
    connect_s = time.monotonic() - connect_started
    cpu = time.process_time()
    stats = fleet.run(args.seconds)
    cpu = time.process_time() - cpu
    fleet.close()
    delivered: dict[str, int] = {"messages": -1, "readings": -1}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the subscriber has everything (or stalls)
        parent.send("count")
        delivered = parent.recv()
        if delivered["messages"] >= stats.messages_acked:
            break
        time.sleep(0.2)
    parent.send("stop")
    sub.join(10)
    return {
        "case": name,
        "readings_per_message": rpm,
        "period_s": period,
        "connect_s": connect_s,
        "elapsed_s": stats.elapsed_s,
        "messages": stats.messages_acked,
        "readings": stats.readings_acked,
        "msg_per_s": stats.messages_per_s,
        "readings_per_s": stats.readings_per_s,
        "cpu_us_per_msg": 1e6 * cpu / max(1, stats.messages_acked),
        "delivered": delivered["readings"],
        "lost": stats.readings_acked - delivered["readings"],
        "refused": stats.refused,
        "disconnects": stats.disconnects,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--signals", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--window", type=int, default=20, help="QoS 1 in flight per connection")
    args = parser.parse_args()
    cases = [
        ("batched (100 readings/msg)", args.signals, 0.0),
        ("baseline (1 reading/msg)", 1, 0.0),
        ("nominal 1 Hz per gateway", args.signals, 1.0),
    ]
    print(
        f"# fleet publish, {args.gateways} gateways x {args.signals} signals, QoS 1, one "
        f"connection per gateway, window {args.window}; {args.seconds:g} s per run, median of "
        f"{args.repeat}; Python {platform.python_version()}, {platform.machine()}"
    )
    print(
        f"# broker: Mosquitto (firmware_sim.stack), max_queued_messages {QUEUE_LIMIT}, "
        f"max_inflight_messages {INFLIGHT_LIMIT}; a QoS 1 subscriber in another process counts "
        "what was delivered"
    )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in cases}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        options = MosquittoOptions(
            max_queued_messages=QUEUE_LIMIT, max_inflight_messages=INFLIGHT_LIMIT
        )
        server = MosquittoServer(Path(tmp), options)
        server.start()
        try:
            for _ in range(args.repeat):
                for name, rpm, period in cases:
                    results[name].append(run_case(server, name, args, rpm, period))
        finally:
            server.stop()
    header = (
        f"{'case':<28} {'msg/s':>9} {'readings/s':>12} {'µs CPU/msg':>11} {'lost':>6} "
        f"{'connect s':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "case"}
        lost = sum(r["lost"] for r in runs)
        print(
            f"{name:<28} {med['msg_per_s']:>9,.0f} {med['readings_per_s']:>12,.0f} "
            f"{med['cpu_us_per_msg']:>11.1f} {lost:>6} {med['connect_s']:>9.2f}"
        )
    batched = statistics.median(r["readings_per_s"] for r in results[cases[0][0]])
    baseline = statistics.median(r["readings_per_s"] for r in results[cases[1][0]])
    nominal = statistics.median(r["readings_per_s"] for r in results[cases[2][0]])
    offered = args.gateways * args.signals
    print(
        f"\nbatching: {batched / baseline:.0f}x the readings/s of one reading per message; "
        f"nominal schedule: {nominal:,.0f} of {offered:,} readings/s offered "
        f"({nominal / offered:.1%})"
    )
    for runs in results.values():
        for r in runs:
            if r["refused"] or r["disconnects"]:
                problems = f"refused {r['refused']}, disconnects {r['disconnects']}"
                print(f"warning: {r['case']}: {problems}")


if __name__ == "__main__":
    main()
