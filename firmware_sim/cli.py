"""``firmware-sim``: a simulated plant behind real protocol servers (docs/simulator.md).

Subcommands: ``run`` (serve a scenario over Modbus TCP, OPC UA, MES HTTP and MQTT), ``backfill``
(write months of history into InfluxDB), ``fleet`` (emulate thousands of gateways over MQTT),
``validate`` and ``map`` (check a scenario file, print its register maps and node ids) and
``demo`` (the whole system as local processes). Every one has ``--help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from firmware_sim.errors import SimError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

_SCENARIO_HELP = "scenario TOML file (default: the built-in demo plant)"
_EPILOG_RUN = """\
examples:
  firmware-sim run                              default scenario, every server on a free port
  firmware-sim run plant.toml --modbus-port 5020 --opcua-port 4840 --mes-port 8080
  firmware-sim run --speed 10080 --mqtt 127.0.0.1:1883 --truth truth.jsonl
                                                a week per minute, from 28 days ago to now

With no --*-port option, Modbus, OPC UA and MES all start on free ports; with some, only those.
The lines printed on start say where each server listens; "ready" follows. Ctrl-C stops.
Accelerated runs (--speed > 1) start 28 days in the past by default and continue in real time
once they reach the present, so every timestamp stays acceptable to the cloud.
"""


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


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, _port(port)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="serve a scenario over Modbus TCP, OPC UA, MES HTTP and MQTT",
        description="Run a simulated plant behind real protocol servers until Ctrl-C.",
        epilog=_EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("scenario", nargs="?", help=_SCENARIO_HELP)
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument(
        "--speed", type=_positive, default=1.0, help="simulated s per real s (10080: a week/min)"
    )
    run.add_argument(
        "--start",
        default=None,
        help="simulated start: 'now', an ISO date/time (UTC), or '-Nd'/'-Nh' before now "
        "(default: now; with --speed > 1: -28d, catching up with the present)",
    )
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--modbus-port", type=_port, help="Modbus TCP port (0: any free)")
    run.add_argument("--opcua-port", type=_port, help="OPC UA port (0: any free)")
    run.add_argument("--mes-port", type=_port, help="MES HTTP port (0: any free)")
    run.add_argument(
        "--mqtt", type=_host_port, metavar="HOST:PORT", help="broker for the smart sensors"
    )
    run.add_argument("--mqtt-username", help="MQTT username of the smart sensors")
    run.add_argument("--mqtt-password", help="MQTT password of the smart sensors")
    run.add_argument("--prefix", default="flightdeck/v1", help="MQTT topic prefix")
    run.add_argument("--truth", metavar="FILE", help="append ground truth here (JSON lines)")
    run.add_argument(
        "--sample-period",
        type=_non_negative,
        default=None,
        help="shortest sensor period in simulated s (default: speed/20, 0 in real time)",
    )
    run.add_argument("--duration", type=_positive, help="stop after this many real seconds")


def _add_backfill(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bf = commands.add_parser(
        "backfill",
        help="write days or months of simulated history into InfluxDB",
        description="Simulate the past N days as fast as possible and write every sample "
        "into InfluxDB in the cloud's schema, with a progress bar; ground truth optional.",
        epilog="example:\n  firmware-sim backfill --days 90 --influx-url http://127.0.0.1:8086 "
        "--database flightdeck --truth truth.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bf.add_argument("scenario", nargs="?", help=_SCENARIO_HELP)
    bf.add_argument("--days", type=_positive, required=True, help="how many days of history")
    bf.add_argument("--end", default="now", help="end of the history: 'now' or ISO (UTC)")
    bf.add_argument("--influx-url", required=True, help="e.g. http://127.0.0.1:8086")
    bf.add_argument("--database", required=True, help="InfluxDB database (created if missing)")
    bf.add_argument("--username", help="InfluxDB user")
    bf.add_argument("--password", help="InfluxDB password")
    bf.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    bf.add_argument("--gateway", help="gateway tag of the points (default: the scenario's)")
    bf.add_argument("--truth", metavar="FILE", help="append ground truth here (JSON lines)")
    bf.add_argument(
        "--sample-period", type=_positive, default=60.0, help="shortest sensor period, s (60)"
    )
    bf.add_argument("--batch", type=int, default=10_000, help="points per write (10000)")


def _add_fleet(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fl = commands.add_parser(
        "fleet",
        help="emulate thousands of gateways publishing over MQTT (load tests)",
        description="One process emulates GATEWAYS gateways x SIGNALS signals publishing "
        "contract telemetry (QoS 1, batched) to a broker, and reports the rate it sustains.",
        epilog="examples:\n  firmware-sim fleet --mqtt 127.0.0.1:1883 --gateways 1000 "
        "--signals 100 --period 1 --duration 60\n  firmware-sim fleet --mqtt 127.0.0.1:1883 "
        "--period 0 --duration 10      as fast as the broker acknowledges",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fl.add_argument("--mqtt", type=_host_port, required=True, metavar="HOST:PORT")
    fl.add_argument("--gateways", type=int, default=1000, help="gateways (1000)")
    fl.add_argument("--signals", type=int, default=100, help="signals per gateway (100)")
    fl.add_argument(
        "--period", type=_non_negative, default=1.0, help="s between a gateway's batches (0: max)"
    )
    fl.add_argument("--duration", type=_positive, default=10.0, help="real seconds (10)")
    fl.add_argument(
        "--readings-per-message", type=int, default=100, help="batch size (1: no batching)"
    )
    fl.add_argument("--connections", type=int, default=0, help="MQTT connections (0: 1/gateway)")
    fl.add_argument("--window", type=int, default=20, help="QoS 1 messages in flight/connection")
    fl.add_argument("--qos", type=int, choices=[0, 1], default=1)
    fl.add_argument("--site", default="fleet", help="site id of the gateways (fleet)")
    fl.add_argument("--prefix", default="flightdeck/v1", help="MQTT topic prefix")
    fl.add_argument("--username", help="MQTT username")
    fl.add_argument("--password", help="MQTT password")
    fl.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firmware-sim",
        description="A simulated plant (stock, production lines, S&OP plan, sensors, faults) "
        "behind real protocol servers, with ground truth. See docs/simulator.md.",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="WARNING",
        help="logging level (default WARNING)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_backfill(commands)
    _add_fleet(commands)
    validate = commands.add_parser(
        "validate",
        help="check a scenario file",
        description="Load a scenario and print a summary, or the error with its field and line.",
    )
    validate.add_argument("scenario", help="scenario TOML file")
    show = commands.add_parser(
        "map",
        help="print a scenario's Modbus register maps, OPC UA node ids and MQTT topics",
        description="What a client needs to read a scenario's devices.",
    )
    show.add_argument("scenario", nargs="?", help=_SCENARIO_HELP)
    demo = commands.add_parser(
        "demo",
        help="run Mosquitto, InfluxDB, this simulator, an edge agent and the cloud service",
        description="Start the whole system locally and report readings stored; Ctrl-C stops.",
    )
    demo.add_argument(
        "--duration", type=_positive, default=None, help="stop after this many seconds"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "demo":
        from firmware_sim.demo import run_demo  # noqa: PLC0415 - the stack and httpx only when asked for

        stored = run_demo(args.duration)
        return EXIT_OK if stored > 0 or args.duration is None else EXIT_ERROR
    from firmware_sim import commands  # noqa: PLC0415 - loaded only when needed

    try:
        return commands.dispatch(args)
    except SimError as exc:
        print(f"firmware-sim: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
