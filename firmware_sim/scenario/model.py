"""What a scenario describes, as frozen dataclasses: the parsed and checked TOML.

Times inside a scenario are *relative* (hours or days after the run starts) so one file serves a
live run that starts now, an accelerated run that starts a month ago and a backfill of last
quarter alike. Daily calendars (shifts, planned stops) are in UTC. Units: pieces, hours,
minutes, kilograms, degrees Celsius, mm/s; ``*_ms`` fields are milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from firmware_sim.core.calendar import DailyWindow
from shared.messages import SignalKind


class DemandPattern(StrEnum):
    """Syntetos-Boylan demand classes; each sets default order frequency and size variability."""

    SMOOTH = "smooth"
    ERRATIC = "erratic"
    INTERMITTENT = "intermittent"
    LUMPY = "lumpy"


#: (orders per day, squared coefficient of variation of order sizes) per pattern: daily totals
#: then fall in the named class (ADI cut-off 1.32, CV² cut-off 0.49; see tests/firmware_sim).
PATTERN_PRESETS: Final[dict[DemandPattern, tuple[float, float]]] = {
    DemandPattern.SMOOTH: (24.0, 0.1),
    DemandPattern.ERRATIC: (3.0, 2.5),
    DemandPattern.INTERMITTENT: (0.4, 0.05),
    DemandPattern.LUMPY: (0.4, 2.5),
}


@dataclass(frozen=True, slots=True)
class Promotion:
    """A planned uplift: demand x ``uplift`` on days ``start_day`` .. ``start_day + days - 1``."""

    start_day: int
    days: int
    uplift: float


@dataclass(frozen=True, slots=True)
class DemandSpec:
    pattern: DemandPattern
    mean_per_day: float
    orders_per_day: float
    size_cv2: float
    weekly: tuple[float, ...]  # 7 multipliers, Monday first, normalised to average 1
    trend_per_week: float  # linear: x (1 + trend_per_week * weeks since start)
    promotions: tuple[Promotion, ...]
    open_hours: tuple[float, float]  # orders arrive uniformly between these hours (UTC)


class ReplenishPolicy(StrEnum):
    SQ = "sQ"  # order a fixed quantity Q when the inventory position falls to s
    SS = "sS"  # order up to S when the inventory position falls to s
    NONE = "none"  # no supplier: only production lines refill this SKU


@dataclass(frozen=True, slots=True)
class ReplenishmentSpec:
    policy: ReplenishPolicy
    reorder_point: int
    quantity: int  # Q for sQ, S for sS
    lead_time_h: float
    lead_time_cv: float  # 0: fixed lead time; else gamma-distributed with this CV


@dataclass(frozen=True, slots=True)
class SkuSpec:
    warehouse: str
    sku: str
    initial_stock: int
    safety_stock: int
    unit_weight_kg: float
    demand: DemandSpec | None
    replenishment: ReplenishmentSpec


@dataclass(frozen=True, slots=True)
class WarehouseSpec:
    id: str
    skus: tuple[SkuSpec, ...]


@dataclass(frozen=True, slots=True)
class ProductSpec:
    sku: str
    rate_per_h: float
    daily_target: int  # the S&OP plan's production target on every scheduled day


@dataclass(frozen=True, slots=True)
class LineSpec:
    id: str
    warehouse: str  # where good output goes
    products: tuple[ProductSpec, ...]
    shifts: tuple[DailyWindow, ...]
    planned_stops: tuple[DailyWindow, ...]
    counter_bits: int  # 16 or 32: the PLC counters roll over at 2**bits
    lot_size: int  # good pieces moved to the warehouse at a time
    mtbf_h: float  # mean running hours between failures; 0 = never fails
    mttr_min: float  # mean minutes to repair
    scrap_rate: float
    ambient_c: float
    running_c: float
    thermal_tau_min: float
    vibration_idle: float
    vibration_running: float


class SensorType(StrEnum):
    LEVEL = "level"  # stock in pieces (x scale + offset)
    LOAD_CELL = "load_cell"  # stock x unit weight + tare (offset), kg
    COUNTER = "counter"  # a line's PLC counter, exact, rolls over
    TEMPERATURE = "temperature"  # a line's equipment temperature
    VIBRATION = "vibration"  # a line's vibration velocity RMS


@dataclass(frozen=True, slots=True)
class SignalSpec:
    id: str
    type: SensorType
    warehouse: str | None
    sku: str | None
    line: str | None
    counter: str  # "good" or "scrap" (counters only)
    period_s: float
    noise: float
    resolution: float
    scale: float
    offset: float
    minimum: float | None
    maximum: float | None
    unit: str
    description: str

    @property
    def kind(self) -> SignalKind:
        if self.type in {SensorType.LEVEL, SensorType.LOAD_CELL}:
            return SignalKind.STOCK_LEVEL
        if self.type is SensorType.COUNTER:
            return SignalKind.PRODUCTION_COUNT
        return SignalKind.SENSOR


class RegisterType(StrEnum):
    FLOAT32 = "float32"
    UINT32 = "uint32"
    INT32 = "int32"
    UINT16 = "uint16"
    INT16 = "int16"


class WordOrder(StrEnum):
    BIG = "big"  # most significant word first ("ABCD")
    LITTLE = "little"  # least significant word first ("CDAB")


REGISTER_WIDTH: Final = {
    RegisterType.FLOAT32: 2,
    RegisterType.UINT32: 2,
    RegisterType.INT32: 2,
    RegisterType.UINT16: 1,
    RegisterType.INT16: 1,
}


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    signal: str
    address: int
    type: RegisterType
    word_order: WordOrder
    scale: float  # the register holds value x scale (integers: rounded)

    @property
    def width(self) -> int:
        return REGISTER_WIDTH[self.type]


@dataclass(frozen=True, slots=True)
class ModbusDeviceSpec:
    unit: int
    registers: tuple[RegisterSpec, ...]


@dataclass(frozen=True, slots=True)
class MqttDeviceSpec:
    """A smart sensor that publishes straight to MQTT as gateway ``gateway``."""

    gateway: str
    signals: tuple[str, ...]
    publish_s: float  # real seconds between batches


class FaultKind(StrEnum):
    FLATLINE = "flatline"  # signal: holds its value
    DRIFT = "drift"  # signal: + rate_per_h x hours into the fault
    SPIKES = "spikes"  # signal: +-magnitude with `probability` per sample
    DROPOUT = "dropout"  # signal: no value (comm failure)
    COUNTER_RESET = "counter_reset"  # line: PLC counters to zero (instant)
    LINE_STOPPAGE = "line_stoppage"  # line: down for the window
    DEMAND_SURGE = "demand_surge"  # sku: demand x multiplier for the window
    GATEWAY_OFFLINE = "gateway_offline"  # mqtt device: silent for the window, new boot after
    CLOCK_JUMP = "clock_jump"  # mqtt device: timestamps + offset for the window


SIGNAL_FAULTS: Final = frozenset(
    {FaultKind.FLATLINE, FaultKind.DRIFT, FaultKind.SPIKES, FaultKind.DROPOUT}
)
LINE_FAULTS: Final = frozenset({FaultKind.COUNTER_RESET, FaultKind.LINE_STOPPAGE})
GATEWAY_FAULTS: Final = frozenset({FaultKind.GATEWAY_OFFLINE, FaultKind.CLOCK_JUMP})
INSTANT_FAULTS: Final = frozenset({FaultKind.COUNTER_RESET})


@dataclass(frozen=True, slots=True)
class FaultParams:
    rate_per_h: float = 0.0  # drift
    probability: float = 0.0  # spikes
    magnitude: float = 0.0  # spikes
    offset_ms: int = 0  # clock_jump
    multiplier: float = 1.0  # demand_surge


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One injected fault: ``kind`` on ``target`` from ``at_ms`` after the start, for
    ``duration_ms`` (0 for instant faults). ``warehouse`` narrows a demand surge."""

    kind: FaultKind
    target: str
    at_ms: int
    duration_ms: int
    params: FaultParams
    warehouse: str | None = None


@dataclass(frozen=True, slots=True)
class RandomFaultSpec:
    """Faults drawn at random: ``per_week`` on average, on one of ``targets`` each."""

    kind: FaultKind
    targets: tuple[str, ...]
    per_week: float
    duration_ms: tuple[int, int]  # uniform between these
    params: FaultParams


@dataclass(frozen=True, slots=True)
class PlanSpec:
    production_tolerance: float  # |actual - target| / target beyond this, per day: a deviation
    demand_tolerance: float  # the same for demand against the demand plan, per bucket
    demand_bucket_days: int
    demand_plan_bias: float  # the demand plan is the expected demand x this (1: unbiased)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    site: str
    gateway: str  # the gateway id backfilled data is tagged with
    plan: PlanSpec
    warehouses: tuple[WarehouseSpec, ...]
    lines: tuple[LineSpec, ...]
    signals: tuple[SignalSpec, ...]
    modbus_devices: tuple[ModbusDeviceSpec, ...]
    mqtt_devices: tuple[MqttDeviceSpec, ...]
    faults: tuple[FaultSpec, ...]
    random_faults: tuple[RandomFaultSpec, ...]
    source: str = ""  # the file it came from, for messages

    def skus(self) -> list[SkuSpec]:
        return [s for w in self.warehouses for s in w.skus]

    def signal(self, signal_id: str) -> SignalSpec | None:
        return next((s for s in self.signals if s.id == signal_id), None)
