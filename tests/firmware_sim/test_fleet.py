"""The fleet: many gateways on one thread publish valid, gap-free contract telemetry to a real
broker, with back-pressure instead of paho queue overflows."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import pytest
from mqtt_capture import Capture

from firmware_sim.errors import MqttDeviceError, PlantParameterError
from firmware_sim.fleet import Fleet, FleetConfig, FleetValues
from firmware_sim.stack import MosquittoServer, free_port
from shared.codec import MessageDecoder, TelemetryDecoder
from shared.messages import Birth


def test_values_are_seeded_and_stock_like_signals_move() -> None:
    a, b = FleetValues(3, 6, seed=1), FleetValues(3, 6, seed=1)
    ticks = [a.tick() for _ in range(50)]
    assert all(np.array_equal(x, b.tick()) for x in ticks)
    stock = np.array([t[:, 0] for t in ticks])
    assert (np.diff(stock, axis=0) < 0).any()
    assert (stock >= 0).all()
    assert not np.array_equal(ticks[0], FleetValues(3, 6, seed=2).tick())


@pytest.mark.parametrize("connections", [0, 3])
def test_a_small_fleet_delivers_every_batch(
    mosquitto: MosquittoServer, unique_name: Callable[[str], str], connections: int
) -> None:
    prefix = f"t/{unique_name('fl')}"
    capture = Capture(mosquitto.host, mosquitto.port, f"{prefix}/#")
    config = FleetConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        gateways=12,
        signals=25,
        readings_per_message=10,
        period_s=0.1,
        connections=connections,
        window=4,
        prefix=prefix,
    )
    fleet = Fleet(config)
    try:
        stats = fleet.run(0.6)
    finally:
        fleet.close()
    telemetry = capture.wait_for(lambda t, _: t.endswith("/telemetry"), count=stats.messages_acked)
    births = capture.wait_for(lambda t, _: t.endswith("/birth"), count=12)
    capture.close()
    assert stats.refused == 0
    assert stats.disconnects == 0
    assert (
        stats.messages_acked == stats.messages_sent >= 12 * 3 * 3
    )  # 3 messages a tick, >= 3 ticks
    assert stats.readings_acked == stats.readings_sent
    decoder = TelemetryDecoder()
    seqs: dict[str, list[int]] = defaultdict(list)
    readings = 0
    for _, payload, _ in telemetry:
        decoded = decoder.decode(payload, now_ms=time.time_ns() // 1_000_000)
        assert not decoded.rejected
        seqs[decoded.batch.gateway].append(decoded.batch.seq)
        readings += len(decoded.batch.readings)
        assert len(decoded.batch.readings) in {10, 5}  # 25 signals in messages of 10
    assert readings == stats.readings_acked
    assert len(seqs) == 12
    for numbers in seqs.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
    birth = MessageDecoder(Birth).decode(births[0][1])
    assert len(birth.signals) == 25


def test_bad_configs_and_no_broker() -> None:
    with pytest.raises(PlantParameterError, match="connections"):
        FleetConfig(gateways=2, connections=3)
    with pytest.raises(PlantParameterError, match="qos"):
        FleetConfig(qos=2)
    with pytest.raises(MqttDeviceError):
        Fleet(FleetConfig(port=free_port(), gateways=2)).connect()
