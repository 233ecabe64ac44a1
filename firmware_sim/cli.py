"""``firmware-sim``: run simulated plants behind real protocol servers.

Subcommands (more come later: ``backfill``, ``fleet``):

* ``firmware-sim run --modbus-port N [--host H] [--seed S] [--period S] [--device-id N]``:
  one SKU's stock process behind a Modbus TCP server (register map in
  :mod:`firmware_sim.modbus_server`). Prints one ``listening`` line when ready and runs until
  SIGINT or SIGTERM. ``--modbus-port 0`` picks a free port (printed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from firmware_sim.demo import run_demo
from firmware_sim.errors import SimError
from firmware_sim.modbus_server import StockModbusServer, serve
from firmware_sim.plant import StockParams, StockProcess

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
_DEFAULTS = StockParams()


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firmware-sim", description="Simulated plants behind real protocol servers."
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="INFO",
        help="logging level (default INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="serve one simulated stock-level sensor over Modbus TCP")
    run.add_argument("--modbus-port", type=_port, required=True, help="TCP port (0: any free)")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--seed", type=int, default=0, help="random seed of the plant (default 0)")
    run.add_argument(
        "--period", type=_positive, default=1.0, help="plant step and update period, s (1.0)"
    )
    run.add_argument("--device-id", type=int, default=1, help="Modbus unit id (default 1)")
    run.add_argument("--initial-stock", type=float, default=_DEFAULTS.initial_stock)
    run.add_argument("--demand-per-s", type=float, default=_DEFAULTS.demand_per_s)
    run.add_argument("--reorder-point", type=float, default=_DEFAULTS.reorder_point)
    run.add_argument("--order-quantity", type=float, default=_DEFAULTS.order_quantity)
    run.add_argument("--lead-time-steps", type=int, default=_DEFAULTS.lead_time_steps)
    demo = commands.add_parser(
        "demo",
        help="run Mosquitto, InfluxDB, this simulator, an edge agent and the cloud service",
        description="Start the whole system locally and report readings stored; Ctrl-C stops.",
    )
    demo.add_argument(
        "--duration", type=_positive, default=None, help="stop after this many seconds"
    )
    return parser


async def _run(args: argparse.Namespace) -> None:
    params = StockParams(
        initial_stock=args.initial_stock,
        demand_per_s=args.demand_per_s,
        reorder_point=args.reorder_point,
        order_quantity=args.order_quantity,
        lead_time_steps=args.lead_time_steps,
    )
    plant = StockProcess(params, seed=args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(server: StockModbusServer) -> None:
        print(
            f"firmware-sim: modbus listening on {server.host}:{server.port} "
            f"(device {server.device_id}, period {server.period_s} s, seed {args.seed})",
            flush=True,
        )

    try:
        await serve(
            args.host,
            args.modbus_port,
            plant,
            args.period,
            device_id=args.device_id,
            on_ready=ready,
            stop=stop,
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "demo":
        stored = run_demo(args.duration)
        return EXIT_OK if stored > 0 or args.duration is None else EXIT_ERROR
    if args.command == "run":
        try:
            asyncio.run(_run(args))
        except SimError as exc:
            print(f"firmware-sim: {exc}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK
    return EXIT_USAGE  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
