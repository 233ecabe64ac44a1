"""The agent's health as data (``/status.json``, ``edge-agent status``) and as a small page.

Pure: the agent builds an :class:`AgentStatus` snapshot; this module renders it as JSON,
plain text (the CLI) or HTML (the status page, every value escaped). :class:`RateMeter`
turns counters into per-second rates over a sliding window of monotonic time.
"""

from __future__ import annotations

import html
from collections import deque
from datetime import UTC, datetime
from typing import Final

import msgspec

from shared.messages import Alert, AlertState

RATE_WINDOW_MS: Final = 10_000


class RateMeter:
    """Events per second over the last ``window_ms`` (monotonic ms in, no clock of its own)."""

    def __init__(self, window_ms: int = RATE_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._samples: deque[tuple[int, int]] = deque()  # (mono ms, count)
        self._sum = 0

    def add(self, count: int, mono_ms: int) -> None:
        self._samples.append((mono_ms, count))
        self._sum += count
        self._trim(mono_ms)

    def rate(self, mono_ms: int) -> float:
        self._trim(mono_ms)
        return self._sum * 1000 / self.window_ms

    def _trim(self, mono_ms: int) -> None:
        while self._samples and self._samples[0][0] <= mono_ms - self.window_ms:
            self._sum -= self._samples.popleft()[1]


class SourceStatus(msgspec.Struct, kw_only=True):
    id: str
    type: str
    reads: int = 0
    readings: int = 0
    comm_failures: int = 0  # readings of quality COMM_FAILURE
    bad: int = 0  # readings of quality BAD
    exceptions: int = 0  # Source.read raised (a bug; reported as COMM_FAILURE)
    last_error: str | None = None
    last_good_ms: int | None = None


class SpoolStatus(msgspec.Struct, kw_only=True):
    path: str
    batches: int
    readings: int
    bytes: int
    max_bytes: int
    policy: str
    oldest_age_s: float | None
    quarantined: list[str] = []
    corrupt_at_runtime: int = 0
    write_errors: int = 0  # transactions the spool could not commit (disk full, I/O error)
    last_write_error: str | None = None
    writable: bool = True  # False: readings are held in memory until a retry commits
    held_bytes: int = 0  # closed batches held in memory, not yet committed


class ConnectionStatus(msgspec.Struct, kw_only=True):
    connected: bool
    broker: str
    connects: int
    since_ms: int | None  # when the current state (connected or not) began
    # MQTT version of the next (or current) connection and why: "5 (auto)",
    # "3.1.1 (auto: fell back from 5, ...)", "5 (pinned)"; "" before the publisher exists.
    protocol: str = ""


class AndonStatus(msgspec.Struct, kw_only=True):
    device: str  # host:port/unit coil N
    wanted: bool
    lit: bool | None  # what the coil was last written to; None: never written
    writes: int
    failures: int
    last_error: str | None


class AckStatus(msgspec.Struct, kw_only=True):
    boot: str
    seq: int
    received_ms: int


class DeliveryStatus(msgspec.Struct, kw_only=True):
    inflight: int
    live_sent: int
    backlog_sent: int
    rewinds: int
    queue_full: int
    publish_errors: int
    broker_rejected: int
    streams: list[dict[str, int | str]] = []


class AgentStatus(msgspec.Struct, kw_only=True):
    site: str
    gateway: str
    boot: str
    version: str
    started_ms: int
    now_ms: int
    connection: ConnectionStatus
    spool: SpoolStatus
    readings_per_s: float
    published_readings_per_s: float
    readings_total: int
    suppressed_by_deadband: int
    drops_by_reason: dict[str, int]
    drops_by_signal: dict[str, int]
    sources: list[SourceStatus]
    last_ack: AckStatus | None
    delivery: DeliveryStatus
    clock_steps: int
    last_clock_step_ms: int
    alerts: list[Alert]
    pending_alert_acks: int
    config_hash: str
    reloads: int = 0
    andon: AndonStatus | None = None


_encoder: Final = msgspec.json.Encoder(order="deterministic")
status_decoder: Final = msgspec.json.Decoder(AgentStatus)


def to_json(status: AgentStatus) -> bytes:
    return _encoder.encode(status)


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(now_ms: int, ms: int | None) -> str:
    return "-" if ms is None else f"{max(0, now_ms - ms) / 1000:.1f} s ago"


def render_text(s: AgentStatus) -> list[str]:
    """The ``edge-agent status`` output."""
    c, sp = s.connection, s.spool
    oldest = "-" if sp.oldest_age_s is None else f"{sp.oldest_age_s:.1f} s"
    ack = (
        "none"
        if s.last_ack is None
        else (
            f"seq {s.last_ack.seq} of boot {s.last_ack.boot}, "
            f"{_age(s.now_ms, s.last_ack.received_ms)}"
        )
    )
    lines = [
        f"gateway {s.gateway} (site {s.site}), boot {s.boot}, agent {s.version}",
        f"broker {c.broker}: {'connected' if c.connected else 'DISCONNECTED'} "
        f"(since {_when(c.since_ms)}, {c.connects} connect(s), MQTT {c.protocol or '-'})",
        f"spool {sp.path}: {sp.batches} batch(es), {sp.readings} reading(s), "
        f"{sp.bytes}/{sp.max_bytes} bytes, oldest {oldest}, policy {sp.policy}",
        f"readings/s {s.readings_per_s:.1f} in, {s.published_readings_per_s:.1f} published; "
        f"{s.readings_total} total, {s.suppressed_by_deadband} withheld by deadband",
        f"last ack: {ack}",
        "drops: " + (", ".join(f"{k} {v}" for k, v in sorted(s.drops_by_reason.items())) or "none"),
    ]
    if not sp.writable or sp.write_errors:
        lines.append(
            f"spool writes: {'FAILING' if not sp.writable else 'ok'}, {sp.write_errors} error(s),"
            f" {sp.held_bytes} bytes held in memory; last: {sp.last_write_error or '-'}"
        )
    lines.extend(f"  quarantined spool file: {q}" for q in sp.quarantined)
    for src in s.sources:
        err = f", last error: {src.last_error}" if src.last_error else ""
        lines.append(
            f"source {src.id} ({src.type}): {src.reads} reads, {src.comm_failures} comm failures,"
            f" {src.bad} bad, {src.exceptions} exceptions, last good "
            f"{_age(s.now_ms, src.last_good_ms)}{err}"
        )
    if s.clock_steps:
        lines.append(f"clock steps: {s.clock_steps} (last {s.last_clock_step_ms:+d} ms)")
    lines.append(f"active alerts: {len(s.alerts)} ({s.pending_alert_acks} ack(s) to send)")
    if s.andon is not None:
        lines.append(f"andon {s.andon.device}: {_andon_text(s.andon)}")
    for a in s.alerts:
        state = "acknowledged" if a.acked else "UNACKNOWLEDGED"
        lines.append(f"  [{a.severity}] {a.id} {a.title} ({a.subject}), {state}{_condition(a)}")
        if a.action:
            lines.append(f"      action: {a.action}")
    return lines


_PAGE_STYLE: Final = (
    "body{font-family:sans-serif;margin:1.5em;max-width:70em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
    "text-align:left}.critical{background:#fdd}.warning{background:#ffd}.bad{color:#b00}"
)


def _andon_text(a: AndonStatus) -> str:
    lit = {True: "ON", False: "OFF", None: "unknown"}[a.lit]
    wanted = "" if a.lit is a.wanted else f", should be {'ON' if a.wanted else 'OFF'}"
    err = f", last error: {a.last_error}" if a.last_error else ""
    return f"{lit}{wanted} ({a.writes} write(s), {a.failures} failure(s){err})"


def render_html(s: AgentStatus, *, token_required: bool) -> str:
    """The status page; every value from the outside world is escaped."""
    e = html.escape
    c, sp = s.connection, s.spool
    state = "connected" if c.connected else '<span class="bad">DISCONNECTED</span>'
    rows = [
        ("Broker", f"{e(c.broker)}: {state} since {e(_when(c.since_ms))}"),
        ("MQTT version", e(c.protocol or "-")),
        ("Spool", e(f"{sp.batches} batches, {sp.readings} readings, {sp.bytes}/{sp.max_bytes} B")),
        ("Oldest in spool", e("-" if sp.oldest_age_s is None else f"{sp.oldest_age_s:.1f} s")),
        (
            "Spool writes",
            (
                '<span class="bad">FAILING</span>: '
                if not sp.writable
                else ("ok: " if sp.write_errors else "ok")
            )
            + (
                e(f"{sp.write_errors} error(s), last {sp.last_write_error or '-'}")
                if sp.write_errors
                else ""
            ),
        ),
        ("Readings/s", e(f"{s.readings_per_s:.1f} in, {s.published_readings_per_s:.1f} out")),
        ("Drops", e(", ".join(f"{k}: {v}" for k, v in sorted(s.drops_by_reason.items())) or "0")),
        (
            "Last ack",
            e(
                "none"
                if s.last_ack is None
                else f"seq {s.last_ack.seq} ({_age(s.now_ms, s.last_ack.received_ms)})"
            ),
        ),
    ]
    rows.extend(("Quarantined spool", e(q)) for q in sp.quarantined)
    if s.andon is not None:
        rows.append(("Andon", e(f"{s.andon.device}: {_andon_text(s.andon)}")))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    sources = "".join(
        f"<tr><td>{e(x.id)}</td><td>{e(x.type)}</td><td>{x.reads}</td><td>{x.comm_failures}</td>"
        f"<td>{x.bad}</td><td>{e(_age(s.now_ms, x.last_good_ms))}</td>"
        f"<td>{e(x.last_error or '')}</td></tr>"
        for x in s.sources
    )
    token = (
        '<input name="token" type="password" placeholder="token" required>'
        if (token_required)
        else ""
    )
    alerts = "".join(_alert_row(a, token) for a in s.alerts) or (
        '<tr><td colspan="5">No active alerts.</td></tr>'
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        '<meta http-equiv="refresh" content="5">'
        f"<title>{e(s.gateway)} - Flightdeck edge</title><style>{_PAGE_STYLE}</style></head><body>"
        f"<h1>Gateway {e(s.gateway)} <small>site {e(s.site)}</small></h1>"
        f"<h2>Alerts</h2><table><tr><th>Severity</th><th>Alert</th><th>Action</th>"
        f"<th>Raised</th><th>Acknowledge</th></tr>{alerts}</table>"
        f"<h2>Health</h2><table>{table}</table>"
        "<h2>Sources</h2><table><tr><th>Source</th><th>Type</th><th>Reads</th>"
        "<th>Comm failures</th><th>Bad</th><th>Last good</th><th>Last error</th></tr>"
        f"{sources}</table><p><a href='/status.json'>status.json</a> &middot; "
        f"boot {e(s.boot)} &middot; agent {e(s.version)}</p></body></html>"
    )


def _condition(a: Alert) -> str:
    """What besides its acknowledgement the plant should know of an alert: cleared (awaiting
    acknowledgement only), shelved in the cloud (no andon)."""
    text = ", cleared" if a.state is AlertState.CLEARED else ""
    if a.shelved_until is not None:
        text += f", shelved until {_when(a.shelved_until)}"
    return text


def _alert_row(a: Alert, token_field: str) -> str:
    e = html.escape
    if a.acked:
        ack = "acknowledged"
    else:
        ack = (
            f'<form method="post" action="/alerts/{e(a.id)}/ack">'
            '<input name="operator" placeholder="your name" required maxlength="256">'
            '<input name="comment" placeholder="comment" maxlength="4096">'
            f'{token_field}<button type="submit">Acknowledge</button></form>'
        )
    return (
        f'<tr class="{e(a.severity)}"><td>{e(a.severity)}</td>'
        f"<td><b>{e(a.title)}</b><br>{e(a.subject)}: {e(a.message)}</td>"
        f"<td>{e(a.action)}</td><td>{e(_when(a.raised))}</td>"
        f"<td>{ack}{e(_condition(a))}</td></tr>"
    )
