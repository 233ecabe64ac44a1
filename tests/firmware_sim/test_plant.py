"""The seeded stock process: deterministic, receipts are jumps up, stock never negative."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.errors import PlantParameterError
from firmware_sim.plant import StockParams, StockProcess


def run(plant: StockProcess, steps: int, dt_s: float = 1.0) -> list[float]:
    return [plant.step(dt_s) for _ in range(steps)]


def test_same_seed_same_series() -> None:
    a, b = StockProcess(seed=7), StockProcess(seed=7)
    series_a = [(a.step(1.0), a.sensor_reading()) for _ in range(2000)]
    series_b = [(b.step(1.0), b.sensor_reading()) for _ in range(2000)]
    assert series_a == series_b
    assert run(StockProcess(seed=8), 2000) != [s for s, _ in series_a]


def test_reading_the_sensor_does_not_change_the_stock_series() -> None:
    quiet, watched = StockProcess(seed=3), StockProcess(seed=3)
    plain = run(quiet, 500)
    observed = []
    for _ in range(500):
        observed.append(watched.step(1.0))
        watched.sensor_reading()
        watched.sensor_reading()
    assert observed == plain


def test_stock_falls_with_demand_and_receipts_are_jumps_up() -> None:
    params = StockParams(
        initial_stock=200,
        demand_per_s=2.0,
        reorder_point=80,
        order_quantity=300,
        lead_time_steps=20,
    )
    plant = StockProcess(params, seed=1)
    previous = plant.stock
    receipts = 0
    for _ in range(3000):
        stock = plant.step(1.0)
        if plant.last_receipt > 0:
            receipts += 1
            assert plant.last_receipt == params.order_quantity
            assert stock > previous  # a receipt is a jump up
        else:
            assert stock <= previous  # without one, stock only falls (or holds)
        # Exact accounting: receipts in, demand served out of what is there.
        available = previous + plant.last_receipt
        assert stock == available - min(plant.last_demand, available)
        previous = stock
    assert receipts >= 10
    assert plant.steps == 3000
    assert plant.time_s == pytest.approx(3000.0)


def test_reorder_happens_at_the_reorder_point_and_arrives_after_the_lead_time() -> None:
    params = StockParams(
        initial_stock=100,
        demand_per_s=1.0,
        reorder_point=50,
        order_quantity=500,
        lead_time_steps=10,
    )
    plant = StockProcess(params, seed=2)
    while plant.on_order == 0:
        plant.step(1.0)
        assert plant.steps < 1000
    assert plant.stock <= params.reorder_point
    ordered_at = plant.steps
    while plant.last_receipt == 0:
        plant.step(1.0)
    assert plant.steps == ordered_at + params.lead_time_steps
    assert plant.on_order == 0


def test_stock_never_negative_and_lost_demand_is_counted() -> None:
    # Demand far above what replenishment can cover: stock-outs are certain.
    params = StockParams(
        initial_stock=10, demand_per_s=50.0, reorder_point=5, order_quantity=20, lead_time_steps=50
    )
    plant = StockProcess(params, seed=4)
    series = run(plant, 1000)
    assert min(series) == 0.0
    assert all(s >= 0 for s in series)
    assert plant.lost_demand > 0


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    initial=st.floats(0, 1000),
    demand=st.floats(0, 100),
    reorder=st.floats(0, 500),
    quantity=st.floats(1, 1000),
    lead=st.integers(1, 50),
    dt=st.floats(0.01, 60),
)
def test_stock_never_negative_property(
    seed: int, initial: float, demand: float, reorder: float, quantity: float, lead: int, dt: float
) -> None:
    params = StockParams(
        initial_stock=initial,
        demand_per_s=demand,
        reorder_point=reorder,
        order_quantity=quantity,
        lead_time_steps=lead,
    )
    plant = StockProcess(params, seed=seed)
    for _ in range(200):
        assert plant.step(dt) >= 0
        assert plant.sensor_reading() >= 0


def test_sensor_is_noisy_and_quantised() -> None:
    params = StockParams(initial_stock=100, demand_per_s=0, sensor_noise=2.0, sensor_resolution=0.5)
    plant = StockProcess(params, seed=5)
    samples = [plant.sensor_reading() for _ in range(500)]
    assert all(round(s / 0.5) * 0.5 == s for s in samples)
    assert len(set(samples)) > 5  # noisy
    assert sum(samples) / len(samples) == pytest.approx(100, abs=0.5)  # unbiased
    exact = StockProcess(
        StockParams(initial_stock=42.0, sensor_noise=0, sensor_resolution=0), seed=0
    )
    assert exact.sensor_reading() == 42.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("initial_stock", -1.0),
        ("demand_per_s", float("nan")),
        ("order_quantity", 0.0),
        ("lead_time_steps", 0),
        ("sensor_resolution", -0.1),
    ],
)
def test_invalid_parameters_name_the_field(field: str, value: float) -> None:
    with pytest.raises(PlantParameterError) as exc:
        StockParams(**{field: value})  # type: ignore[arg-type]
    assert exc.value.field == field
    again = pickle.loads(pickle.dumps(exc.value))
    assert (again.field, str(again)) == (field, str(exc.value))


@pytest.mark.parametrize("dt", [0.0, -1.0, float("inf")])
def test_step_needs_a_positive_duration(dt: float) -> None:
    with pytest.raises(PlantParameterError, match="dt_s"):
        StockProcess().step(dt)
