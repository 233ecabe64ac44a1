"""``cloud-service``: run the cloud side (ingest today; analytics, alerts and API to come)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from cloud_service.analytics.cli import register as register_analyze
from cloud_service.analytics.cli import run as run_analyze
from cloud_service.app import build_app
from cloud_service.errors import ConfigError
from cloud_service.metadata import MetadataStore
from cloud_service.settings import load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloud-service",
        description="Flightdeck cloud service: MQTT ingest into InfluxDB with end-to-end acks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service until SIGINT/SIGTERM")
    run.add_argument("--config", type=Path, help="TOML settings file (env FLIGHTDECK_CLOUD_* wins)")
    run.add_argument("--log-level", default="INFO")
    check = sub.add_parser("check-config", help="validate a settings file and print it")
    check.add_argument("config", type=Path)
    migrate = sub.add_parser("migrate", help="bring the metadata store's schema up to date")
    migrate.add_argument("--config", type=Path)
    register_analyze(sub)
    return parser


async def _migrate(config: Path | None) -> None:
    store = MetadataStore.from_settings(load_settings(config).metadata)
    try:
        await store.migrate()
    finally:
        await store.aclose()


async def _run(config: Path | None) -> None:
    app = build_app(load_settings(config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.run(stop)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "analyze":
        return run_analyze(args)
    try:
        if args.command == "check-config":
            settings = load_settings(args.config)
            print(settings.model_dump_json(indent=2))
            return 0
        if args.command == "migrate":
            logging.basicConfig(level="INFO")
            asyncio.run(_migrate(args.config))
            return 0
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per write is noise
        asyncio.run(_run(args.config))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
