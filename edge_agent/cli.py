"""``edge-agent``: run the gateway agent, check its configuration, show its health.

* ``edge-agent run CONFIG.toml``: run until SIGTERM/SIGINT (exit 0), SIGHUP reloads the file;
  exit 2 on a bad config, 1 on another failure (e.g. the spool is locked by another agent).
* ``edge-agent check-config CONFIG.toml``: print ``OK`` and a summary (exit 0), or every
  problem by field path / TOML line on stderr (exit 2).
* ``edge-agent status CONFIG.toml [--json]``: the running agent's health and active alerts
  from its status page; if it is not running, what its spool file holds (exit 3).
* ``edge-agent ack CONFIG.toml ALERT --operator NAME [--comment TEXT]``: acknowledge an alert
  at the plant (through the running agent; it publishes the ack, spooled while offline).

Environment overrides (``FLIGHTDECK_EDGE_...``, see :mod:`edge_agent.config`) apply to both.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Final, TextIO

from edge_agent.config import (
    AgentConfig,
    HttpSourceConfig,
    ModbusSourceConfig,
    OpcUaSourceConfig,
    SignalConfig,
    SourceConfig,
    load_config,
)
from edge_agent.errors import ConfigError, EdgeError
from edge_agent.version import agent_version
from shared.topics import Channel

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_CONFIG: Final = 2
EXIT_NOT_RUNNING: Final = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="Flightdeck edge agent.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {agent_version()}")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="INFO",
        help="logging level (default INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the agent until SIGTERM/SIGINT")
    run.add_argument("config", metavar="CONFIG.toml")
    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", metavar="CONFIG.toml")
    status = commands.add_parser("status", help="show the running agent's health and alerts")
    status.add_argument("config", metavar="CONFIG.toml")
    status.add_argument("--json", action="store_true", help="print the raw status JSON")
    ack = commands.add_parser("ack", help="acknowledge an active alert at the plant")
    ack.add_argument("config", metavar="CONFIG.toml")
    ack.add_argument("alert", metavar="ALERT_ID")
    ack.add_argument("--operator", required=True, help="who acknowledges")
    ack.add_argument("--comment", default="", help="optional note for the planners")
    ack.add_argument("--token", default=None, help="status.ack_token, when one is configured")
    return parser


def summarize(config: AgentConfig) -> list[str]:
    """Human-readable lines describing a valid configuration."""
    broker = config.broker
    scheme = "mqtts" if broker.tls is not None else "mqtt"
    auth = f"user {broker.username}" if broker.username else "anonymous"
    topics = config.topics
    lines = [
        f"site {config.site}, gateway {config.gateway}, client id {config.client_id}",
        f"broker {scheme}://{broker.host}:{broker.port} ({auth}, keepalive {broker.keepalive_s} s,"
        f" inflight {broker.max_inflight}, queue {broker.max_queued})",
        "topics "
        + ", ".join(
            topics.topic(config.site, config.gateway, ch)
            for ch in (Channel.TELEMETRY, Channel.BIRTH, Channel.STATE, Channel.ACK)
        ),
        f"batching: {config.batching.max_readings} readings or {config.batching.max_age_s} s",
    ]
    sp = config.spool
    lines.append(
        f"spool {config.spool_path}: max {sp.max_bytes} bytes, max age {sp.max_age_s:g} s,"
        f" {sp.policy}"
    )
    st = config.status
    lines.append(
        f"status page http://{st.host}:{st.port}/" if st.enabled else "status page disabled"
    )
    for src in config.sources:
        count = len(config.signals_of(src.id))
        lines.append(f"source {src.id}: {_describe_source(src)}, {count} signal(s)")
    for sig in config.signals:
        unit = f" [{sig.unit}]" if sig.unit else ""
        rbe = ""
        if sig.deadband or sig.deadband_percent:
            rbe = (
                f", deadband {sig.deadband:g}/{sig.deadband_percent:g}%"
                f" heartbeat {sig.heartbeat_s:g} s"
            )
        counter = f", {sig.counter_bits}-bit counter" if sig.counter_bits else ""
        lines.append(
            f"signal {sig.id}: {sig.source} {_describe_address(sig)}"
            f" x{sig.scale:g}{sig.offset:+g} -> {sig.kind}{unit} every {sig.period_s:g} s"
            f"{rbe}{counter}"
        )
    lines.append(f"config hash {config.config_hash()}")
    return lines


def _describe_source(src: SourceConfig) -> str:
    if isinstance(src, ModbusSourceConfig):
        return f"modbus {src.host}:{src.port} unit {src.unit_id}, timeout {src.timeout_s} s"
    if isinstance(src, OpcUaSourceConfig):
        return f"opcua {src.url} ({src.mode}), timeout {src.timeout_s} s"
    if isinstance(src, HttpSourceConfig):
        return f"http {src.url}, timeout {src.timeout_s} s"
    return f"csv {src.path} ({src.mode})"


def _describe_address(sig: SignalConfig) -> str:
    if sig.address is not None:
        return f"{sig.register_type} {sig.address} {sig.data_type}/{sig.word_order}"
    return sig.node or sig.field or sig.column or "?"


def _print_config_error(exc: ConfigError, out: TextIO) -> None:
    where = str(exc.path) if exc.path is not None else "configuration"
    count = len(exc.issues)
    print(f"{where}: {count} problem{'s' if count != 1 else ''}", file=out)
    for issue in exc.issues:
        print(f"  {issue}", file=out)


def _check_config(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        _print_config_error(exc, sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # a bug in the validator: one clear line, not a traceback
        print(f"{path}: cannot be checked: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"OK {path}")
    for line in summarize(config):
        print(f"  {line}")
    return EXIT_OK


def _run(path: str) -> int:
    from edge_agent.runner import run_agent  # noqa: PLC0415 - keep check-config light

    try:
        config = load_config(path)
    except ConfigError as exc:
        _print_config_error(exc, sys.stderr)
        return EXIT_CONFIG
    try:
        asyncio.run(run_agent(config, config_path=path))
    except ConfigError as exc:  # e.g. TLS files that exist but do not load
        _print_config_error(exc, sys.stderr)
        return EXIT_CONFIG
    except EdgeError as exc:
        logging.getLogger("edge_agent").error("%s", exc)
        return EXIT_ERROR
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "run":
        return _run(args.config)
    if args.command in ("status", "ack"):
        from edge_agent.cli_status import ack_command, status_command  # noqa: PLC0415

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            _print_config_error(exc, sys.stderr)
            return EXIT_CONFIG
        if args.command == "status":
            return status_command(config, as_json=args.json)
        return ack_command(config, args.alert, args.operator, args.comment, args.token)
    return EXIT_CONFIG  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
