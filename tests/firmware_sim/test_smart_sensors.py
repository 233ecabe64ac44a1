"""Smart-sensor firmware mode: devices publish straight to a real Mosquitto in the contract,
and gateway faults look on the wire as they would from real hardware."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
from mqtt_capture import Capture
from sim_scenarios import HOUR_MS, MONDAY, small_scenario

from firmware_sim.clock import ManualClock
from firmware_sim.runtime import Simulation
from firmware_sim.servers.smart_sensors import SmartSensors
from firmware_sim.stack import MosquittoServer
from shared.codec import MessageDecoder, TelemetryDecoder
from shared.messages import Birth, GatewayState, State

FAULTS = """
[[faults]]
kind = "gateway_offline"
target = "ss-1"
at_h = 1
duration_h = 1

[[faults]]
kind = "clock_jump"
target = "ss-1"
at_h = 3
duration_h = 1
offset_s = -600
"""


def ends(suffix: str) -> Callable[[str, bytes], bool]:
    return lambda topic, _: topic.endswith(suffix)


async def test_devices_publish_contract_messages_and_fail_like_hardware(
    mosquitto: MosquittoServer, unique_name: Callable[[str], str]
) -> None:
    prefix = f"t/{unique_name('ss')}"
    clock = ManualClock(MONDAY + 8 * HOUR_MS)
    sim = Simulation(small_scenario(FAULTS), seed=3, clock=clock)
    capture = Capture(mosquitto.host, mosquitto.port, f"{prefix}/#")
    sensors = SmartSensors(sim, host=mosquitto.host, port=mosquitto.port, prefix=prefix)
    telemetry = TelemetryDecoder()
    births, states = MessageDecoder(Birth), MessageDecoder(State)
    try:
        await sensors.start()
        birth = births.decode(capture.wait_for(ends("/birth"))[0][1])
        assert (birth.gateway, birth.site) == ("ss-1", "t-plant")
        assert [s.id for s in birth.signals] == ["b1.weight", "p1.level"]
        assert birth.signals[0].location == "W1"
        assert birth.signals[0].sku == "B1"
        assert birth.signals[1].period_s == 60
        first_boot = birth.boot

        clock.advance(HOUR_MS // 2)
        sensors.flush()
        batches = []
        for message in capture.wait_for(ends("/telemetry"), count=2):  # at start, and now
            decoded = telemetry.decode(message[1], now_ms=clock.now_ms(), expect_gateway="ss-1")
            assert not decoded.rejected
            batches.append(decoded.batch)
        assert [(b.boot, b.seq, b.first_unacked, b.clock_step_ms) for b in batches] == [
            (first_boot, 1, 1, 0),
            (first_boot, 2, 2, 0),
        ]
        readings = [r for b in batches for r in b.readings]
        levels = [r.ts for r in readings if r.signal == "p1.level"]
        assert levels == list(range(MONDAY + 8 * HOUR_MS, clock.now_ms() + 1, 60_000))
        assert len([r for r in readings if r.signal == "b1.weight"]) == 7
        sent = {(r.signal, r.ts, r.value) for r in readings}
        world = sim.world
        assert ("p1.level", clock.now_ms(), world.latest("p1.level").value) in sent  # type: ignore[union-attr]

        clock.advance(HOUR_MS)  # 09:30: inside the offline hour (09:00-10:00)
        sensors.flush()
        will = capture.wait_for(ends("/state"), count=2)[-1]  # the broker published the will
        assert states.decode(will[1]).state is GatewayState.OFFLINE
        assert sensors.devices["ss-1"].lost > 0

        clock.advance(HOUR_MS)  # 10:30: power is back, a new boot
        sensors.flush()
        second = births.decode(capture.wait_for(ends("/birth"), count=2)[-1][1])
        assert second.boot != first_boot
        raw = [msgspec.json.decode(m[1]) for m in capture.wait_for(ends("/telemetry"), count=3)]
        after = [b for b in raw if b["boot"] == second.boot]
        assert after[0]["seq"] == 1
        stamps = [r[1] for b in after for r in b["readings"]]
        assert min(stamps) >= MONDAY + 10 * HOUR_MS  # lost: the outage and the unsent buffer
        window = range(MONDAY + 8 * HOUR_MS + HOUR_MS // 2 + 1, MONDAY + 10 * HOUR_MS)
        gap = [r[1] for b in raw for r in b["readings"] if r[1] in window]
        assert gap == []

        clock.advance(HOUR_MS)  # 11:30: inside the clock jump (11:00-12:00), 10 min behind
        sensors.flush()
        jumped = msgspec.json.decode(capture.wait_for(ends("/telemetry"), count=4)[-1][1])
        assert jumped["boot"] == second.boot
        assert jumped["clock_step_ms"] == -600_000
        true_times = {s for s in range(MONDAY + 11 * HOUR_MS, clock.now_ms() + 1, 60_000)}
        shifted = {r[1] + 600_000 for r in jumped["readings"] if r[0] == "p1.level"}
        assert true_times <= shifted
    finally:
        await sensors.stop()
        await asyncio.sleep(0)
        last = capture.wait_for(ends("/state"), count=4)[-1]
        capture.close()
        sim.close()
    assert states.decode(last[1]).state is GatewayState.OFFLINE
