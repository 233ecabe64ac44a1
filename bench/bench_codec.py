"""Telemetry codec: decode + validate throughput on one core, for 100-reading batches.

Measures the shipped decoder (msgspec JSON, typed rows, timestamp window, per-reading salvage
path unused on clean data) beside the alternatives it was chosen over, all in this run:
orjson rows and columns with Python validation, msgspec msgpack, CBOR, stdlib json (baseline).
Every candidate does the same checks: id pattern, finite values, types, timestamp window.

    python bench/bench_codec.py [--readings 100] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import re
import time
from collections.abc import Callable
from typing import Any

import cbor2
import msgspec
import orjson

from shared.codec import TelemetryDecoder, encode
from shared.ids import ID_REGEX
from shared.messages import Quality, Reading, TelemetryBatch

ID_RE = re.compile(ID_REGEX)
# Every candidate gets the same cache of signal ids already proven valid, as the shipped one has.
KNOWN: set[str] = set()


def valid_signal(sig: object) -> bool:
    if sig in KNOWN:
        return True
    if isinstance(sig, str) and ID_RE.match(sig):
        KNOWN.add(sig)
        return True
    return False


NOW_MS = int(time.time() * 1000)
LO, HI = NOW_MS - 35 * 86_400_000, NOW_MS + 300_000


def make_batch(n: int) -> TelemetryBatch:
    rng = random.Random(42)
    readings = [
        Reading(
            f"plant-3.line-2.sig-{i:04d}",
            NOW_MS - rng.randrange(60_000),
            rng.uniform(0, 5000),
            Quality.GOOD,
        )
        for i in range(n)
    ]
    return TelemetryBatch(gateway="gw-0042", boot="b-7f3a9c", seq=123456, readings=readings)


def check_rows(doc: Any) -> int:
    """Python validation of a row-oriented decoded document (what orjson/cbor/json need)."""
    if not isinstance(doc, dict):
        raise ValueError("not an object")
    for key in ("gateway", "boot"):
        if not isinstance(doc.get(key), str) or not ID_RE.match(doc[key]):
            raise ValueError(key)
    if not isinstance(doc.get("seq"), int):
        raise ValueError("seq")
    rows = doc["readings"]
    for row in rows:
        sig, ts, value, quality = row
        if not valid_signal(sig):
            raise ValueError("signal")
        if not (isinstance(ts, int) and LO <= ts <= HI):
            raise ValueError("ts")
        if not (isinstance(value, float | int) and math.isfinite(value)):
            raise ValueError("value")
        if quality not in (0, 1, 2, 3):
            raise ValueError("quality")
    return len(rows)


def check_columns(doc: Any) -> int:
    for key in ("gateway", "boot"):
        if not isinstance(doc.get(key), str) or not ID_RE.match(doc[key]):
            raise ValueError(key)
    sigs, ts, values, qualities = doc["signals"], doc["ts"], doc["values"], doc["quality"]
    if not len(sigs) == len(ts) == len(values) == len(qualities):
        raise ValueError("columns differ in length")
    if not all(valid_signal(s) for s in sigs):
        raise ValueError("signal")
    if not all(type(t) is int for t in ts) or min(ts) < LO or max(ts) > HI:
        raise ValueError("ts")
    if not all(type(v) is float and math.isfinite(v) for v in values):
        raise ValueError("value")
    if not set(qualities) <= {0, 1, 2, 3}:
        raise ValueError("quality")
    return len(sigs)


class ObjReading(msgspec.Struct):
    signal: str
    ts: int
    value: float
    quality: int


def candidates(batch: TelemetryBatch) -> dict[str, tuple[bytes, Callable[[bytes], int]]]:
    rows = msgspec.to_builtins(batch)
    columns = {
        "gateway": batch.gateway,
        "boot": batch.boot,
        "seq": batch.seq,
        "signals": [r.signal for r in batch.readings],
        "ts": [r.ts for r in batch.readings],
        "values": [r.value for r in batch.readings],
        "quality": [int(r.quality) for r in batch.readings],
    }
    shipped = TelemetryDecoder()
    msgpack_dec = msgspec.msgpack.Decoder(TelemetryBatch)

    def msgspec_json(payload: bytes) -> int:
        return len(shipped.decode(payload, now_ms=NOW_MS).batch.readings)

    def msgspec_msgpack(payload: bytes) -> int:
        b = msgpack_dec.decode(payload)
        for r in b.readings:
            if r.ts < LO or r.ts > HI or not valid_signal(r.signal):
                raise ValueError("reading")
        return len(b.readings)

    # Objects instead of arrays for readings (self-describing, larger).
    Obj = msgspec.defstruct(
        "ObjBatch",
        [("gateway", str), ("boot", str), ("seq", int), ("readings", list[ObjReading])],
    )
    obj_doc = {**rows, "readings": [msgspec.to_builtins(ObjReading(*r)) for r in rows["readings"]]}
    obj_dec = msgspec.json.Decoder(Obj)

    def msgspec_json_objects(payload: bytes) -> int:
        b = obj_dec.decode(payload)
        n = 0
        for r in b.readings:
            if not valid_signal(r.signal) or not math.isfinite(r.value) or not LO <= r.ts <= HI:
                raise ValueError("reading")
            n += 1
        return n

    return {
        "msgspec JSON rows, typed (shipped)": (encode(batch), msgspec_json),
        "msgspec JSON objects, typed + py checks": (orjson.dumps(obj_doc), msgspec_json_objects),
        "msgspec msgpack rows, typed": (msgspec.msgpack.encode(batch), msgspec_msgpack),
        "orjson rows + py checks": (orjson.dumps(rows), lambda p: check_rows(orjson.loads(p))),
        "orjson columns + py checks": (
            orjson.dumps(columns),
            lambda p: check_columns(orjson.loads(p)),
        ),
        "cbor2 rows + py checks": (cbor2.dumps(rows), lambda p: check_rows(cbor2.loads(p))),
        "stdlib json rows + py checks (baseline)": (
            json.dumps(rows).encode(),
            lambda p: check_rows(json.loads(p)),
        ),
    }


def measure(fn: Callable[[bytes], int], payload: bytes, seconds: float) -> float:
    """Best of 5 runs of about ``seconds``/5 each, in readings per second."""
    n = fn(payload)
    loops = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn(payload)
        if (elapsed := time.perf_counter() - t0) > 0.05:
            break
        loops *= 2
    loops = max(1, int(loops * (seconds / 5) / elapsed))
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn(payload)
        best = min(best, (time.perf_counter() - t0) / loops)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per candidate")
    args = parser.parse_args()
    batch = make_batch(args.readings)
    print(
        f"# codec benchmark: {args.readings}-reading batches, one core,"
        f" Python {platform.python_version()}, {platform.machine()},"
        f" msgspec {msgspec.__version__}, orjson {orjson.__version__}"
    )
    print(f"{'candidate':44} {'bytes':>7} {'µs/batch':>9} {'readings/s':>12}")
    for name, (payload, fn) in candidates(batch).items():
        rate = measure(fn, payload, args.seconds)
        print(f"{name:44} {len(payload):7d} {args.readings / rate * 1e6:9.1f} {rate:12,.0f}")


if __name__ == "__main__":
    main()
