"""``edge-agent``: run the gateway agent, or check its configuration.

* ``edge-agent run CONFIG.toml``: run until SIGTERM/SIGINT (exit 0), exit 2 on a bad config.
* ``edge-agent check-config CONFIG.toml``: print ``OK`` and a summary (exit 0), or every
  problem by field path / TOML line on stderr (exit 2).

Environment overrides (``FLIGHTDECK_EDGE_...``, see :mod:`edge_agent.config`) apply to both.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Final, TextIO

from edge_agent.config import AgentConfig, load_config
from edge_agent.errors import ConfigError, EdgeError
from shared.topics import Channel

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_CONFIG: Final = 2


def _version() -> str:
    try:
        return metadata.version("flightdeck")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="Flightdeck edge agent.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    for src in config.sources:
        count = len(config.signals_of(src.id))
        lines.append(
            f"source {src.id}: {src.type} {src.host}:{src.port} unit {src.unit_id}, "
            f"timeout {src.timeout_s} s, {count} signal(s)"
        )
    for sig in config.signals:
        unit = f" [{sig.unit}]" if sig.unit else ""
        lines.append(
            f"signal {sig.id}: {sig.source} {sig.register_type} {sig.address} {sig.data_type}"
            f"/{sig.word_order} x{sig.scale:g}{sig.offset:+g} -> {sig.kind}{unit}"
            f" every {sig.period_s:g} s"
        )
    lines.append(f"config hash {config.config_hash()}")
    return lines


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
    print(f"OK {path}")
    for line in summarize(config):
        print(f"  {line}")
    return EXIT_OK


def _run(path: str) -> int:
    from edge_agent.agent import run_agent  # noqa: PLC0415 - keep check-config light

    try:
        config = load_config(path)
    except ConfigError as exc:
        _print_config_error(exc, sys.stderr)
        return EXIT_CONFIG
    try:
        asyncio.run(run_agent(config))
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
    return EXIT_CONFIG  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
