"""Alert latency end to end (issue #7 §4): a reading that crosses a threshold, published at the
edge, to its alert arriving on the gateway's ``alerts`` channel, while ingest runs at 50,000
readings/s. Goal: p50 <= 250 ms, p99 <= 1 s.

Everything is real and private to the run: Mosquitto and influxd from ``firmware_sim.stack``,
the cloud service as its own process (``python -m cloud_service.cli run --config FILE``:
ingest, live analytics, monitor, outbox dispatcher, MQTT alert link; SQLite metadata with the
default ``synchronous = FULL``), the background load from ``firmware_sim.fleet`` in a third
process, and a probe gateway here:

* the probe announces (retained birth) one SENSOR signal per trial and warms each up with
  ``--warmup`` normal readings (the anomaly kernel flags nothing before 150 samples);
* a trial publishes ONE reading far outside the signal's range (value 5,000 against 50 ± 1),
  alone in its batch, and times ``time.perf_counter()`` from just before ``publish()`` to the
  arrival of an ``Alert`` for that signal (``state = active``) on
  ``TopicScheme().alerts_subscription(site, gateway)``;
* one fresh signal per trial, so every trial raises a new alert (a new subject) with the
  production anomaly hold (``[live] anomaly_hold_s``, 600 s) and without waiting for the
  previous alert to clear; re-using one signal would also meet the kernel's hold-off (250
  samples) and its "must be a record" bar (the previous spike is the record to beat);
* the rule: ``signal_anomaly``, ``anomaly_score >= 0.5``, no on-delay, ``clear_for = 0``,
  ``ack_required = false``;
* baseline, interleaved trial by trial with the alert trials under the same load: the same
  timing for a plain MQTT round trip through the same broker (the probe publishes, an echo
  process subscribed at QoS 1 republishes a retained QoS 1 message to the probe's alerts
  topic), so the figures show what the cloud adds to the broker's own round trip.

A first series runs with no background load, then the fleet starts (``--gateways`` x
``--signals`` at 1 Hz: 500 x 100 = 50,000 readings/s offered, 100-reading messages, one MQTT
connection per gateway) and, once ingest has caught up with it (a normal probe reading stored,
end-to-end ack, within 0.5 s five times in a row; at most ``--settle`` s, else the run says so
and measures anyway), the series runs again under load. The achieved rate is what the cloud
stored (its Prometheus counter ``flightdeck_ingest_points_stored``) during the loaded series.
An alert later than 5 s does not stop its trial from counting: it is recorded when it comes.

    python bench/bench_alert_latency.py [--trials 100] [--idle-trials 100] [--tcp-nodelay]
        [--evaluate-interval 1.0] [--profile FILE] [--cloud-log FILE]

Service settings are the defaults (``[live] evaluate_interval_s = 1``, ``anomaly_hold_s =
600``, ``[ingest] max_age_s = 0.2``) but ``[api] enabled = false``. ``--tcp-nodelay`` sets
Mosquitto's ``set_tcp_nodelay true`` (default off: Nagle holds small packets ~40 ms).
``--profile FILE`` runs the cloud service under cProfile (its event loop thread) and writes
the statistics to FILE when it stops. Runs in about 70 s when the cloud keeps up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt

from firmware_sim.fleet import Fleet, FleetConfig
from firmware_sim.stack import InfluxServer, MosquittoOptions, MosquittoServer, free_port
from shared.codec import encode
from shared.messages import (
    Ack,
    Alert,
    AlertState,
    Birth,
    Quality,
    Reading,
    SignalKind,
    SignalSpec,
    TelemetryBatch,
)
from shared.topics import Channel, TopicScheme

SCHEME = TopicScheme()
SITE = "probe"
GATEWAY = "probe-gw"
FLEET_SITE = "fleet"
ECHO_IN = "bench/echo/in"
NORMAL, SPREAD, SPIKE = 50.0, 1.0, 5_000.0
TRIAL_TIMEOUT_S = 5.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a live process has used so far (Linux /proc)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


# -- roles run as separate processes -------------------------------------------------------


def role_fleet(args: argparse.Namespace) -> None:
    """The background load: ``firmware_sim.fleet`` until SIGTERM; stats to ``--out``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fleet = Fleet(
        FleetConfig(
            port=args.port, gateways=args.gateways, signals=args.signals, period_s=1.0,
            readings_per_message=100, site=FLEET_SITE, seed=1,
        )
    )  # fmt: skip
    fleet.connect()
    print("ready", flush=True)
    stats = fleet.run(3600.0, stop=stop)
    fleet.close()
    Path(args.out).write_text(
        json.dumps(
            {
                "readings_acked": stats.readings_acked,
                "elapsed_s": stats.elapsed_s,
                "refused": stats.refused,
                "disconnects": stats.disconnects,
            }
        )
    )


def role_echo(args: argparse.Namespace) -> None:
    """The baseline's far end: republish each message on the probe's alerts topic."""
    ready = threading.Event()

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        n = msg.payload.split(b"|", 1)[0].decode()
        c.publish(SCHEME.alert_topic(SITE, GATEWAY, f"echo-{n}"), msg.payload, qos=1, retain=True)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-echo")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(ECHO_IN, 1)
    client.on_subscribe = lambda *_: ready.set()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # for sigwait, every thread
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    if not ready.wait(10):
        raise SystemExit("echo: not subscribed")
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM})
    client.disconnect()
    client.loop_stop()


# -- the probe gateway (this process) -------------------------------------------------------


class Probe:
    """One gateway: birth, warm-up, then crossing readings timed to their alerts."""

    def __init__(self, port: int, n_signals: int) -> None:
        self.signals = [f"p{i:04d}" for i in range(n_signals)]
        self.pace = "pace"
        self.next_signal = 0
        self.seq = 0
        self.boot = f"b{int(time.time())}"
        self.acked = 0
        self.expect: str | None = None
        self.sent: dict[str, float] = {}  # trial key -> perf_counter before publish()
        self.arrivals: dict[str, float] = {}  # trial key -> first arrival (also late ones)
        self.background_alerts = 0
        self.alerts_seen = 0
        self.alerted: set[str] = set()  # subjects with an active alert seen
        self.skipped = 0
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._ack = threading.Condition(self._lock)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="probe-gw", protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(100)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(
            [
                (SCHEME.alerts_subscription(SITE, GATEWAY), 1),
                (SCHEME.topic(SITE, GATEWAY, Channel.ACK), 1),
                (SCHEME.subscription(Channel.ALERTS, site=FLEET_SITE) + "/+", 0),
            ]
        )
        self.client.loop_start()
        if not subscribed.wait(10):
            raise SystemExit("probe: not subscribed")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        t = time.perf_counter()
        topic = msg.topic
        if topic.endswith("/ack"):
            ack = msgspec.json.decode(msg.payload, type=Ack)
            if ack.boot == self.boot:
                with self._ack:
                    self.acked = max(self.acked, ack.seq)
                    self._ack.notify_all()
            return
        if not msg.payload:
            return  # a closed alert's retained state removed
        if not topic.startswith(SCHEME.topic(SITE, GATEWAY, Channel.ALERTS)):
            self.background_alerts += 1
            return
        alert_id = topic.rsplit("/", 1)[1]
        if alert_id.startswith("echo-"):
            subject = alert_id
        else:
            alert = msgspec.json.decode(msg.payload, type=Alert)
            if alert.state is not AlertState.ACTIVE:
                return
            self.alerts_seen += 1
            subject = alert.subject
        with self._lock:
            self.alerted.add(subject)
            if subject in self.sent and subject not in self.arrivals:
                self.arrivals[subject] = t
                if subject == self.expect:
                    self._event.set()

    def publish_batch(self, readings: list[Reading]) -> int:
        self.seq += 1
        batch = TelemetryBatch(
            gateway=GATEWAY, boot=self.boot, seq=self.seq, first_unacked=self.seq,
            readings=readings,
        )  # fmt: skip
        info = self.client.publish(
            SCHEME.topic(SITE, GATEWAY, Channel.TELEMETRY), encode(batch), qos=1
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SystemExit(f"probe publish refused: rc={info.rc}")
        return self.seq

    def wait_acked(self, seq: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._ack:
            while self.acked < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ack.wait(left)
        return True

    def announce(self) -> None:
        specs = [SignalSpec(id=s, kind=SignalKind.SENSOR, unit="bar", period_s=1.0)
                 for s in [*self.signals, self.pace]]  # fmt: skip
        birth = Birth(
            gateway=GATEWAY, site=SITE, boot=self.boot, agent_version="bench",
            config_hash="probe", started_ms=now_ms(), signals=specs,
        )  # fmt: skip
        topic = SCHEME.topic(SITE, GATEWAY, Channel.BIRTH)
        self.client.publish(topic, encode(birth), qos=1, retain=True).wait_for_publish(10)

    def until_cloud_listens(self, timeout: float) -> None:
        """Send a small batch until one is acked: the cloud is subscribed and storing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seq = self.publish_batch([Reading(self.signals[0], now_ms() - 1_000_000, NORMAL)])
            if self.wait_acked(seq, 1.0):
                return
        raise SystemExit("the cloud service never acked the probe")

    def until_caught_up(self, max_s: float, within_s: float = 0.5, runs: int = 5) -> float:
        """Publish -> stored (end-to-end ack) of a normal reading, until ``runs`` in a row
        take less than ``within_s``: the cloud has caught up with the load. Returns the
        seconds it took, or -1 if it never did."""
        start = time.monotonic()
        good = 0
        rng = random.Random(3)
        while time.monotonic() - start < max_s:
            t0 = time.monotonic()
            value = round(NORMAL + rng.gauss(0, SPREAD), 2)
            seq = self.publish_batch([Reading(self.pace, now_ms(), value, Quality.GOOD)])
            ok = self.wait_acked(seq, max(0.1, max_s - (time.monotonic() - start)))
            good = good + 1 if ok and time.monotonic() - t0 < within_s else 0
            if good >= runs:
                return time.monotonic() - start
            time.sleep(0.3)
        return -1.0

    def warm_up(self, points: int, per_batch: int = 5_000) -> None:
        """``points`` normal readings per signal, 1 s apart, the last one 3 s ago."""
        rng = random.Random(7)
        t0 = now_ms() - (points + 2) * 1000
        readings = [
            Reading(s, t0 + k * 1000, round(NORMAL + rng.gauss(0, SPREAD), 2), Quality.GOOD)
            for k in range(points)
            for s in self.signals
        ]
        last = 0
        for lo in range(0, len(readings), per_batch):
            last = self.publish_batch(readings[lo : lo + per_batch])
        if not self.wait_acked(last, 60):
            raise SystemExit("warm-up batches not acked")

    def _timed(self, key: str, send: Any) -> str:
        """Send, wait for the arrival (at most ``TRIAL_TIMEOUT_S``); return the trial's key.
        A late arrival is still recorded when it comes."""
        with self._lock:
            self.expect = key
            self._event.clear()
            self.sent[key] = time.perf_counter()
        send()
        self._event.wait(TRIAL_TIMEOUT_S)
        return key

    def latency(self, key: str) -> float | None:
        with self._lock:
            arrived = self.arrivals.get(key)
            return None if arrived is None else arrived - self.sent[key]

    def alert_trial(self) -> str:
        with self._lock:  # skip signals whose warm-up noise already raised an alert
            while self.signals[self.next_signal] in self.alerted:
                self.next_signal += 1
                self.skipped += 1
        sid = self.signals[self.next_signal]
        self.next_signal += 1
        return self._timed(
            sid, lambda: self.publish_batch([Reading(sid, now_ms(), SPIKE, Quality.GOOD)])
        )

    def echo_trial(self, n: int) -> str:
        payload = f"{n}|".encode() + b"x" * 400  # about an encoded Alert's size
        return self._timed(
            f"echo-{n}", lambda: self.client.publish(ECHO_IN, payload, qos=1, retain=False)
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def series(probe: Probe, trials: int, budget_s: float, echo_base: int) -> dict[str, list[str]]:
    """Alert and echo trials interleaved, a random pause between them (no phase lock); gives
    up early after 10 alert trials in a row without an alert within ``TRIAL_TIMEOUT_S``."""
    out: dict[str, list[str]] = {"alert": [], "echo": []}
    rng = random.Random(11)
    deadline = time.monotonic() + budget_s
    missed = 0
    for k in range(trials):
        if time.monotonic() > deadline or missed >= 10:
            why = "time budget reached" if missed < 10 else "10 alerts in a row > 5 s"
            print(f"  ({why}: stopped after {k} trials)")
            break
        key = probe.alert_trial()
        out["alert"].append(key)
        missed = missed + 1 if probe.latency(key) is None else 0
        time.sleep(rng.uniform(0.02, 0.12))
        out["echo"].append(probe.echo_trial(echo_base + k))
        time.sleep(rng.uniform(0.02, 0.12))
    return out


def summary(name: str, probe: Probe, keys: list[str]) -> tuple[str, list[float]]:
    """Percentiles over every trial whose message arrived (late ones included)."""
    lat = [x for k in keys if (x := probe.latency(k)) is not None]
    lost = len(keys) - len(lat)
    if not lat:
        return f"{name}: nothing arrived ({len(keys)} trials)", []
    ms = [1000 * v for v in lat]
    late = sum(v > TRIAL_TIMEOUT_S for v in lat)
    return (
        f"{name}: p50 {pct(ms, 0.5):7.1f} ms  p90 {pct(ms, 0.9):7.1f} ms  "
        f"p99 {pct(ms, 0.99):7.1f} ms  max {max(ms):7.1f} ms  "
        f"(trials {len(keys)}, > {TRIAL_TIMEOUT_S:.0f} s: {late}, never arrived: {lost})"
    ), ms


# -- the orchestrating process -------------------------------------------------------------


def cloud_config(
    workdir: Path, mqtt_port: int, influx: str, metrics_port: int, evaluate_s: float
) -> Path:
    rules = workdir / "rules.toml"
    rules.write_text(
        """
[[rules]]
id = "signal-anomaly"
type = "signal_anomaly"
severity = "warning"
for = "0s"
clear_for = "0s"
ack_required = false
description = "A reading far from its signal's usual behaviour"
when = [{ metric = "anomaly_score", op = ">=", value = 0.5 }]
"""
    )
    path = workdir / "cloud.toml"
    path.write_text(
        f"""
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
client_id = "bench-cloud"
share_group = "bench"

[influx]
url = "{influx}"
database = "alertbench"
gzip = false

[metadata]
url = "sqlite+aiosqlite:///{workdir / "meta.sqlite"}"

[metrics]
port = {metrics_port}

[live]
evaluate_interval_s = {evaluate_s}

[alerts]
rules_file = "{rules}"

[api]
enabled = false
"""
    )
    return path


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(flightdeck_[a-z_]+)(?:\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def until_metrics(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if scrape(port).get("flightdeck_ingest_mqtt_connected") == 1.0:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the cloud service did not come up (see its log)")


def spawn_role(role: str, port: int, out: Path, **kw: Any) -> subprocess.Popen[str]:
    argv = [sys.executable, __file__, "--role", role, "--port", str(port), "--out", str(out)]
    for key, value in kw.items():
        argv += ["--" + key, str(value)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"{role} did not start")
    return proc


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 30) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=["fleet", "echo"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--out")
    parser.add_argument("--gateways", type=int, default=500, help="fleet gateways (1 Hz each)")
    parser.add_argument("--signals", type=int, default=100, help="signals per fleet gateway")
    parser.add_argument("--trials", type=int, default=100, help="trials under load")
    parser.add_argument("--idle-trials", type=int, default=100, help="trials without load")
    parser.add_argument("--warmup", type=int, default=200, help="normal readings per signal")
    parser.add_argument(
        "--settle", type=float, default=30.0, help="max s for ingest to catch up with the load"
    )
    parser.add_argument(
        "--evaluate-interval", type=float, default=1.0, help="[live] evaluate_interval_s"
    )
    parser.add_argument(
        "--tcp-nodelay", action="store_true", help="Mosquitto set_tcp_nodelay true (no Nagle)"
    )
    parser.add_argument("--profile", help="run the cloud under cProfile, stats to this file")
    parser.add_argument("--cloud-log", help="keep the cloud service's log here")
    args = parser.parse_args()
    if args.role == "fleet":
        role_fleet(args)
        return
    if args.role == "echo":
        role_echo(args)
        return

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    print(
        f"# bench_alert_latency on {platform.node()}: {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load_average()}"
    )
    broker = MosquittoServer(
        workdir / "mosquitto",
        MosquittoOptions(
            max_queued_messages=0, max_inflight_messages=0, persistence=False,
            extra=["set_tcp_nodelay true"] if args.tcp_nodelay else [],
        ),
    )  # fmt: skip
    influxd = InfluxServer(workdir / "influxd")
    cloud: subprocess.Popen[bytes] | None = None
    fleet: subprocess.Popen[str] | None = None
    echo: subprocess.Popen[str] | None = None
    probe: Probe | None = None
    log_path = Path(args.cloud_log) if args.cloud_log else workdir / "cloud.log"
    try:
        broker.start()
        influxd.start()
        metrics_port = free_port()
        cfg = cloud_config(workdir, broker.port, influxd.url, metrics_port, args.evaluate_interval)
        cmd = [sys.executable]
        if args.profile:
            cmd += ["-m", "cProfile", "-o", str(Path(args.profile).resolve())]
        cmd += ["-m", "cloud_service.cli", "run", "--config", str(cfg)]
        with log_path.open("ab") as log:
            cloud = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        until_metrics(metrics_port, 60)
        echo = spawn_role("echo", broker.port, workdir / "echo.json")
        n_signals = (args.idle_trials + args.trials) * 11 // 10  # spares (see alert_trial)
        probe = Probe(broker.port, n_signals)
        probe.announce()
        probe.until_cloud_listens(30)
        probe.warm_up(args.warmup)
        print(
            f"# cloud up, {n_signals} probe signals warmed up with {args.warmup} readings each "
            f"({time.monotonic() - started:.0f} s); [live] evaluate_interval_s = "
            f"{args.evaluate_interval} (default 1.0), anomaly_hold_s = 600 (default), "
            "[ingest] max_age_s = 0.2 (default)"
        )

        print(f"no background load (load average {load_average()}):")
        idle = series(probe, args.idle_trials, 40, 0)
        time.sleep(1.0)  # stragglers
        print("  " + summary("alert  ", probe, idle["alert"])[0])
        print("  " + summary("MQTT rt", probe, idle["echo"])[0])

        offered = args.gateways * args.signals
        fleet = spawn_role(
            "fleet", broker.port, workdir / "fleet.json", gateways=args.gateways,
            signals=args.signals,
        )  # fmt: skip
        took = probe.until_caught_up(args.settle)
        if took < 0:
            print(
                f"  ingest had NOT caught up with the load after {args.settle:.0f} s "
                "(publish -> stored still >= 0.5 s); measuring anyway"
            )
        else:
            print(f"  ingest caught up with the load {took:.1f} s after the fleet started")
        pids = {"cloud": cloud.pid, "influxd": influxd.pid, "mosquitto": broker.pid,
                "fleet": fleet.pid}  # fmt: skip
        cpu0 = {k: cpu_s(p) for k, p in pids.items()}
        m0, t0 = scrape(metrics_port), time.monotonic()
        print(f"background load: {offered:,} readings/s offered (load average {load_average()}):")
        loaded = series(probe, args.trials, 60, 100_000)
        m1, t1 = scrape(metrics_port), time.monotonic()
        cpu1 = {k: cpu_s(p) for k, p in pids.items()}
        load_at_end = load_average()
        stored = (
            m1["flightdeck_ingest_points_stored_total"]
            - m0["flightdeck_ingest_points_stored_total"]
        )
        rate = (stored - len(loaded["alert"])) / (t1 - t0)
        deadline = time.monotonic() + 10  # late alerts still count, at their real latency
        while time.monotonic() < deadline and any(
            probe.latency(k) is None for k in loaded["alert"]
        ):
            time.sleep(0.2)
        line, lat = summary("alert  ", probe, loaded["alert"])
        print("  " + line)
        print("  " + summary("MQTT rt", probe, loaded["echo"])[0])
        print(
            f"  background readings stored by the cloud: {rate:,.0f}/s over {t1 - t0:.0f} s "
            f"(un-acked in the cloud at the end: "
            f"{m1.get('flightdeck_ingest_unacked_messages', 0):.0f} messages)"
        )
        cores = ", ".join(f"{k} {(cpu1[k] - cpu0[k]) / (t1 - t0):.2f}" for k in pids)
        print(f"  CPU cores used during the loaded series: {cores}")
        print(f"  load average at the end of the loaded series: {load_at_end}")
        print(
            f"  alerts on fleet gateways meanwhile: {probe.background_alerts}; probe signals "
            f"skipped (their warm-up noise raised an alert): {probe.skipped}"
        )
        stop(fleet)
        fleet_stats = json.loads((workdir / "fleet.json").read_text())
        print(
            f"  fleet: {fleet_stats['readings_acked'] / fleet_stats['elapsed_s']:,.0f} readings/s "
            f"acked by the broker over {fleet_stats['elapsed_s']:.0f} s, "
            f"{fleet_stats['refused']} refused, {fleet_stats['disconnects']} disconnects"
        )
        # never-arrived trials count as infinitely late
        lat += [math.inf] * (len(loaded["alert"]) - len(lat))
        if lat:
            p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
            print(
                f"goal p50 <= 250 ms: {p50:.0f} ms ({'met' if p50 <= 250 else 'NOT met'}); "
                f"p99 <= 1 s: {p99:.0f} ms ({'met' if p99 <= 1000 else 'NOT met'}); "
                f"at {rate:,.0f} background readings/s"
            )
    finally:
        if probe is not None:
            probe.close()
        stop(fleet)
        stop(echo)
        stop(cloud)
        influxd.stop()
        broker.stop()
        print(f"# {time.monotonic() - started:.0f} s in all; cloud log: {log_path}")


if __name__ == "__main__":
    main()
