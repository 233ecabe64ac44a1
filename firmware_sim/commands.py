"""The work behind each ``firmware-sim`` subcommand (the parser is in :mod:`firmware_sim.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from firmware_sim.clock import SimClock, wall_ms
from firmware_sim.core.calendar import DAY_MS, HOUR_MS, iso_time
from firmware_sim.errors import PlantParameterError, SimError
from firmware_sim.runtime import Simulation
from firmware_sim.scenario import Scenario, default_scenario, load_scenario

DEFAULT_PAST_DAYS = 28
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([dh])\Z")


def dispatch(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": cmd_run,
        "backfill": cmd_backfill,
        "fleet": cmd_fleet,
        "validate": cmd_validate,
        "map": cmd_map,
    }
    return handlers[args.command](args)


def scenario_of(path: str | None) -> Scenario:
    return load_scenario(path) if path else default_scenario()


def parse_time(text: str, now_ms: int) -> int:
    """``now``, ``-Nd``/``-Nh`` (before now), or an ISO date/time (UTC unless it says)."""
    if text == "now":
        return now_ms
    if m := _RELATIVE.match(text):
        unit = DAY_MS if m.group(2) == "d" else HOUR_MS
        return now_ms - round(float(m.group(1)) * unit)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PlantParameterError("time", text, "use now, -Nd, -Nh or an ISO date/time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


# --- run -----------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    asyncio.run(_run(args))
    return 0


def _say(text: str) -> None:
    print(f"firmware-sim: {text}", flush=True)


async def _run(args: argparse.Namespace) -> None:
    if args.log_level != "DEBUG":  # asyncua warns that a server without security is insecure
        logging.getLogger("asyncua").setLevel(logging.ERROR)
    scenario = scenario_of(args.scenario)
    now = wall_ms()
    if args.start is None:
        start = now - DEFAULT_PAST_DAYS * DAY_MS if args.speed > 1 else now
        cap = args.speed > 1
    else:
        start, cap = parse_time(args.start, now), False
    clock = SimClock(start, speed=args.speed, cap_at_wall=cap)
    sim = Simulation(
        scenario,
        seed=args.seed,
        clock=clock,
        sample_floor_s=args.sample_period,
        truth_path=args.truth,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    servers: list[Any] = []
    try:
        _say(
            f'scenario "{scenario.name}" (seed {args.seed}, speed {args.speed:g}x, '
            f"start {iso_time(sim.world.start_ms)}{', catching up with now' if cap else ''})"
        )
        await _start_servers(args, sim, servers)
        _say("ready")
        if args.duration is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
    finally:
        for server in reversed(servers):
            await server.stop()
        sim.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _start_servers(args: argparse.Namespace, sim: Simulation, servers: list[Any]) -> None:
    ports = (args.modbus_port, args.opcua_port, args.mes_port)
    every = all(p is None for p in ports)
    modbus_port, opcua_port, mes_port = (0, 0, 0) if every else ports
    scenario = sim.scenario
    if modbus_port is not None:
        if scenario.modbus_devices:
            from firmware_sim.servers.modbus import ModbusPlantServer  # noqa: PLC0415 - loaded only when needed

            modbus = ModbusPlantServer(sim, host=args.host, port=modbus_port)
            await modbus.start()
            servers.append(modbus)
            units = ", ".join(str(u) for u in modbus.devices)
            _say(f"modbus listening on {args.host}:{modbus.port} (units {units})")
        elif not every:
            raise SimError("the scenario has no [[modbus]] devices to serve")
    if mes_port is not None:
        from firmware_sim.servers.mes import MesServer  # noqa: PLC0415 - loaded only when needed

        mes = MesServer(sim, host=args.host, port=mes_port)
        await mes.start()
        servers.append(mes)
        _say(f"mes listening on {mes.url}/api/v1")
    if opcua_port is not None:
        from firmware_sim.servers.opcua import OpcUaPlantServer  # noqa: PLC0415 - loaded only when needed

        opcua = OpcUaPlantServer(sim, host=args.host, port=opcua_port)
        await opcua.start()
        servers.append(opcua)
        _say(f"opcua listening on {opcua.endpoint} (namespace {opcua.namespace_index})")
    if args.mqtt is not None:
        if not scenario.mqtt_devices:
            raise SimError("--mqtt given but the scenario has no [[mqtt_devices]]")
        from firmware_sim.servers.smart_sensors import SmartSensors  # noqa: PLC0415 - loaded only when needed

        host, port = args.mqtt
        sensors = SmartSensors(
            sim,
            host=host,
            port=port,
            prefix=args.prefix,
            username=args.mqtt_username,
            password=args.mqtt_password,
        )
        await sensors.start()
        servers.append(sensors)
        names = ", ".join(sensors.devices)
        _say(f"mqtt smart sensors {names} publishing to {host}:{port}")


# --- backfill ------------------------------------------------------------------------------
def cmd_backfill(args: argparse.Namespace) -> int:
    return asyncio.run(_backfill(args))


async def _backfill(args: argparse.Namespace) -> int:
    from cloud_service.storage import InfluxSettings, InfluxStore, StorageError  # noqa: PLC0415 - loaded only when needed
    from firmware_sim.backfill import backfill  # noqa: PLC0415 - loaded only when needed
    from firmware_sim.core.truth import JsonLinesWriter, Truth  # noqa: PLC0415 - loaded only when needed
    from firmware_sim.progress import ProgressBar  # noqa: PLC0415 - loaded only when needed

    scenario = scenario_of(args.scenario)
    end = parse_time(args.end, wall_ms())
    end -= end % 1000
    start = end - round(args.days * DAY_MS)
    truth = Truth(keep=False)
    writer = JsonLinesWriter(args.truth) if args.truth else None
    if writer is not None:
        truth.add_sink(writer)
    try:
        settings = InfluxSettings(
            url=args.influx_url,
            database=args.database,
            username=args.username,
            password=args.password,
        )
    except ValueError as exc:
        raise SimError(f"influx settings: {exc}") from None
    print(
        f"backfill: {scenario.name!r}, {args.days:g} days {iso_time(start)} .. {iso_time(end)} "
        f"into {args.influx_url} database {args.database!r} (seed {args.seed})",
        file=sys.stderr,
    )
    try:
        async with InfluxStore(settings) as store:
            await store.ensure_database()
            stats = await backfill(
                scenario,
                store,
                seed=args.seed,
                start_ms=start,
                end_ms=end,
                gateway=args.gateway,
                sample_floor_s=args.sample_period,
                truth=truth,
                batch_lines=args.batch,
                progress=ProgressBar("backfill"),
            )
    except StorageError as exc:
        raise SimError(f"InfluxDB: {exc}") from None
    finally:
        if writer is not None:
            writer.close()
    print(
        f"backfill: {stats.points:,} points in {stats.elapsed_s:.1f} s "
        f"({stats.points_per_s:,.0f}/s), {stats.truth_records} ground-truth records"
        + (f" in {args.truth}" if args.truth else "")
    )
    return 0


# --- fleet ---------------------------------------------------------------------------------
def cmd_fleet(args: argparse.Namespace) -> int:
    from firmware_sim.fleet import Fleet, FleetConfig, FleetStats  # noqa: PLC0415 - loaded only when needed

    host, port = args.mqtt
    config = FleetConfig(
        host=host,
        port=port,
        gateways=args.gateways,
        signals=args.signals,
        period_s=args.period,
        readings_per_message=args.readings_per_message,
        connections=args.connections,
        window=args.window,
        qos=args.qos,
        site=args.site,
        prefix=args.prefix,
        seed=args.seed,
        username=args.username,
        password=args.password,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    fleet = Fleet(config)

    def report(s: FleetStats) -> None:
        print(
            f"fleet: {s.elapsed_s:5.1f} s  {s.messages_per_s:9,.0f} msg/s  "
            f"{s.readings_per_s:11,.0f} readings/s",
            file=sys.stderr,
            flush=True,
        )

    try:
        print(
            f"fleet: connecting {config.connection_count} connections for {config.gateways} "
            f"gateways x {config.signals} signals to {host}:{port}",
            file=sys.stderr,
            flush=True,
        )
        fleet.connect()
        stats = fleet.run(args.duration, stop=stop, progress=report)
    finally:
        fleet.close()
        signal.signal(signal.SIGINT, previous)
    print(
        f"fleet: {stats.messages_acked:,} messages ({stats.readings_acked:,} readings) "
        f"acknowledged in {stats.elapsed_s:.1f} s: {stats.messages_per_s:,.0f} msg/s, "
        f"{stats.readings_per_s:,.0f} readings/s; refused {stats.refused}, "
        f"disconnects {stats.disconnects}"
    )
    return 0 if stats.disconnects == 0 else 1


# --- validate, map -------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    s = load_scenario(args.scenario)
    kinds = sorted({f.kind.value for f in s.faults})
    print(f'{args.scenario}: OK, scenario "{s.name}" at site {s.site}')
    print(f"  warehouses: {', '.join(f'{w.id} ({len(w.skus)} SKUs)' for w in s.warehouses)}")
    print(f"  lines: {', '.join(line.id for line in s.lines) or '-'}")
    print(f"  signals: {len(s.signals)}; modbus units: {len(s.modbus_devices)}; ", end="")
    print(f"mqtt devices: {len(s.mqtt_devices)}")
    print(f"  faults: {len(s.faults)} ({', '.join(kinds) or '-'}); random: {len(s.random_faults)}")
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    from firmware_sim.servers.modbus_map import describe  # noqa: PLC0415 - loaded only when needed

    s = scenario_of(args.scenario)
    print(f'Scenario "{s.name}", site {s.site}\n\nModbus TCP (one port, one unit id per device):')
    for device in s.modbus_devices:
        print("\n".join(describe(s, device)))
    print("\nOPC UA (namespace urn:flightdeck:firmware-sim, ns=2 on this server):")
    print("  ns=2;s=plant.time  plant.speed  plant.site")
    for line in s.lines:
        counter = "UInt16" if line.counter_bits == 16 else "UInt32"
        print(
            f"  ns=2;s={line.id}.count ({counter})  .scrap ({counter})  .good_total  "
            ".scrap_total  .state  .state_code  .reason  .rate  .sku  .order"
        )
    for sig in s.signals:
        print(f"  ns=2;s=sig.{sig.id} (Double, {sig.unit or 'no unit'})")
    print("\nMES HTTP: GET /api/v1/clock /lines /lines/{id} /orders /orders/{id} /counts /plan")
    print("\nMQTT smart sensors (flightdeck/v1/<site>/<gateway>/telemetry):")
    for dev in s.mqtt_devices:
        print(f"  flightdeck/v1/{s.site}/{dev.gateway}/telemetry: {', '.join(dev.signals)}")
    return 0
