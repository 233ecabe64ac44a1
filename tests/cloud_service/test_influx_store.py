"""InfluxStore: HTTP behaviour with a mock transport, then the real influxd 1.6.7.

The mock tests pin what we send (params, gzip, auth) and how answers are classified; the
integration tests prove round trips, bad-point isolation, auth and outage recovery on the
real server, whose error texts the classification depends on.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_service.storage import (
    InfluxSettings,
    InfluxStore,
    LineProtocolError,
    Point,
    QueryError,
    RejectedLine,
    Series,
    StorageError,
    StoreAuthError,
    StoreUnavailable,
    TargetNotFound,
    WriteRejected,
    encode_point,
    encode_points,
    write_isolating,
)
from cloud_service.storage.influx import _loads
from cloud_service.storage.influxql import create_retention_policy, drop_database, select_series
from cloud_service.storage.line_protocol import INT_MAX, INT_MIN, TIME_BOUNDS
from firmware_sim.stack import InfluxServer

T0 = 1_700_000_000_000
Handler = Callable[[httpx.Request], httpx.Response]


def log2_bound(n: int) -> int:
    return 1 + 2 * math.ceil(math.log2(n))


# -- mock transport ----------------------------------------------------------------------


class Recorder:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.handler(request)

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)

    def store(self, **kw: Any) -> InfluxStore:
        options: dict[str, Any] = {"url": "http://influx.test:8086", "database": "db1"} | kw
        return InfluxStore(
            InfluxSettings(**options),
            transport=httpx.MockTransport(self),
            rng=random.Random(1),
            sleep=self.sleep,
        )


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handle(_: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handle


def sequence(*handlers: Handler) -> Handler:
    queue = list(handlers)

    def handle(request: httpx.Request) -> httpx.Response:
        return (queue.pop(0) if len(queue) > 1 else queue[0])(request)

    return handle


async def test_write_params_gzip_and_precision_mapping() -> None:
    rec = Recorder(answer(204))
    lines = [f"m,site=s{i} value={i}.5 {T0 + i}" for i in range(100)]
    async with rec.store(retention_policy="rp1") as store:
        await store.write(lines, precision="us")
    (req,) = rec.requests
    assert req.method == "POST"
    assert req.url.path == "/write"
    assert dict(req.url.params) == {"db": "db1", "rp": "rp1", "precision": "u"}
    assert req.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(req.content) == "\n".join(lines).encode()
    assert store.stats.bytes_sent < store.stats.bytes_raw


async def test_small_or_ungzipped_bodies_are_sent_plain() -> None:
    rec = Recorder(answer(204))
    async with rec.store() as store:
        await store.write(b"m v=1 1", precision="ns")
    async with rec.store(gzip=False) as store:
        await store.write(["m v=1 1"] * 500, precision="s")
    assert [r.headers.get("Content-Encoding") for r in rec.requests] == [None, None]
    assert [r.url.params["precision"] for r in rec.requests] == ["n", "s"]
    assert rec.requests[0].content == b"m v=1 1"


async def test_empty_write_sends_nothing_and_bad_precision_is_refused() -> None:
    rec = Recorder(answer(204))
    async with rec.store() as store:
        await store.write([])
        await store.write(b"")
        with pytest.raises(LineProtocolError, match="precision"):
            await store.write(["m v=1 1"], precision="u")
        with pytest.raises(LineProtocolError, match="Unicode"):
            await store.write(['m s="\ud800" 1'])
        with pytest.raises(TypeError, match="one str"):
            await store.write("m v=1 1")
    assert rec.requests == []


async def test_auth_headers() -> None:
    rec = Recorder(answer(204))
    async with rec.store() as store:
        await store.write(["m v=1 1"])
    async with rec.store(username="u", password="p'w") as store:
        await store.write(["m v=1 1"])
    async with rec.store(token="tok") as store:
        await store.write(["m v=1 1"])
    auth = [r.headers.get("Authorization") for r in rec.requests]
    assert auth == [None, httpx.BasicAuth("u", "p'w")._auth_header, "Token tok"]
    assert all("p'w" not in str(r.url) and "tok" not in str(r.url) for r in rec.requests)


async def test_retry_after_is_honoured_on_503() -> None:
    rec = Recorder(sequence(answer(503, {"error": "busy"}, {"Retry-After": "2"}), answer(204)))
    async with rec.store() as store:
        await store.write(["m v=1 1"])
    assert rec.sleeps == [2.0]
    assert len(rec.requests) == 2
    assert store.stats.retries == 1


async def test_429_without_retry_after_uses_jittered_backoff() -> None:
    rec = Recorder(sequence(answer(429), answer(429), answer(204)))
    async with rec.store(backoff_base_s=0.5, backoff_cap_s=10.0) as store:
        await store.write(["m v=1 1"])
    assert len(rec.sleeps) == 2
    assert 0 <= rec.sleeps[0] <= 0.5
    assert 0 <= rec.sleeps[1] <= 1.0


async def test_outage_outlasting_the_retries_raises_store_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    rec = Recorder(refuse)
    async with rec.store(max_retries=3) as store:
        with pytest.raises(StoreUnavailable) as info:
            await store.write(["m v=1 1"])
    assert info.value.attempts == 4
    assert info.value.retryable
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(rec.sleeps) == 3


async def test_5xx_is_retried_then_reported_with_status() -> None:
    rec = Recorder(answer(500, {"error": "timeout"}))
    async with rec.store(max_retries=2) as store:
        with pytest.raises(StoreUnavailable) as info:
            await store.query("SHOW DATABASES")
    assert info.value.status == 500
    assert "timeout" in str(info.value)
    assert len(rec.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_not_retried(status: int) -> None:
    rec = Recorder(answer(status, {"error": "authorization failed"}))
    async with rec.store() as store:
        with pytest.raises(StoreAuthError, match="authorization failed"):
            await store.write(["m v=1 1"])
        with pytest.raises(StoreAuthError):
            await store.query("SELECT * FROM m")
    assert len(rec.requests) == 2


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, 'database not found: "db1"'), (500, "retention policy not found: rp1")],
)
async def test_missing_targets_are_not_retried(status: int, message: str) -> None:
    rec = Recorder(answer(status, {"error": message}))
    async with rec.store() as store:
        with pytest.raises(TargetNotFound, match="not found"):
            await store.write(["m v=1 1"])
    assert len(rec.requests) == 1


async def test_parse_errors_name_the_lines() -> None:
    lines = ["m v=1 1", "m v= 2", "m v=3 3", "m v=NaN 4"]
    message = (
        "partial write: unable to parse 'm v= 2': missing field value\n"
        "unable to parse 'm v=NaN 4': invalid number dropped=0"
    )
    rec = Recorder(answer(400, {"error": message}))
    async with rec.store() as store:
        with pytest.raises(WriteRejected) as info:
            await store.write(lines)
        with pytest.raises(WriteRejected) as from_bytes:
            await store.write("\n".join(lines).encode())
    for exc in (info.value, from_bytes.value):
        assert [(e.index, e.line) for e in exc.line_errors] == [(1, "m v= 2"), (3, "m v=NaN 4")]
        assert exc.line_index == 1
        assert exc.partial
        assert exc.dropped == 0
        assert exc.others_written
        assert exc.batch_size == 4
    assert info.value.line_errors[1].error == "unable to parse 'm v=NaN 4': invalid number"


async def test_a_line_containing_the_separator_is_still_matched() -> None:
    lines = ['m s="x\': y" 1', "m v=1 2"]
    message = "partial write: unable to parse 'm s=\"x': y\" 1': bad dropped=0"
    rec = Recorder(answer(400, {"error": message}))
    async with rec.store() as store:
        with pytest.raises(WriteRejected) as info:
            await store.write(lines)
    assert [e.index for e in info.value.line_errors] == [0]
    assert info.value.others_written


@pytest.mark.parametrize(
    ("message", "dropped", "others"),
    [
        ("field type conflict", None, False),
        ('partial write: field type conflict: input field "v" ... dropped=1', 1, False),
        ("partial write: unable to parse 'zzz': missing fields dropped=0", 0, False),
        ("partial write: unable to parse 'm v= 2': bad dropped=1", 1, False),
    ],
)
async def test_unexplained_rejections_do_not_claim_the_rest_was_written(
    message: str, dropped: int | None, others: bool
) -> None:
    rec = Recorder(answer(400, {"error": message}))
    async with rec.store() as store:
        with pytest.raises(WriteRejected) as info:
            await store.write(["m v=1 1", "m v= 2"])
    assert info.value.dropped == dropped
    assert info.value.others_written is others


async def test_an_unreadable_error_header_is_a_rejection_not_an_outage() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError(
            "illegal header line: bytearray(b\"X-Influxdb-Error: unable to parse 'm\\x00'\")",
            request=request,
        )

    rec = Recorder(echo)
    async with rec.store() as store:
        with pytest.raises(WriteRejected) as info:
            await store.write(["m\x00 v= 1"])
        with pytest.raises(QueryError, match="control characters"):
            await store.query("SELECT 1")
    assert info.value.status is None
    assert len(rec.requests) == 2  # neither was retried


async def test_413_is_a_rejection() -> None:
    rec = Recorder(answer(413, {"error": "Request Entity Too Large"}))
    async with rec.store() as store:
        with pytest.raises(WriteRejected) as info:
            await store.write(["m v=1 1"])
    assert info.value.status == 413
    assert len(rec.requests) == 1


async def test_reads_use_get_and_changes_use_post() -> None:
    rec = Recorder(answer(200, {"results": [{"statement_id": 0}]}))
    async with rec.store(retention_policy="rp1") as store:
        await store.query("SELECT * FROM m", epoch="us")
        await store.query("  show measurements")
        await store.query("SELECT * INTO m2 FROM m")
        await store.query("DROP MEASUREMENT m")
        await store.query("SELECT * FROM m WHERE t = '" + "x" * 5000 + "'")
        await store.ensure_database()
    methods = [r.method for r in rec.requests]
    assert methods == ["GET", "GET", "POST", "POST", "POST", "POST", "POST"]
    first = rec.requests[0]
    assert dict(first.url.params) == {
        "db": "db1",
        "rp": "rp1",
        "epoch": "u",
        "q": "SELECT * FROM m",
    }
    posted = [httpx.QueryParams(r.content.decode())["q"] for r in rec.requests[5:]]
    assert posted == [
        'CREATE DATABASE "db1"',
        'CREATE RETENTION POLICY "rp1" ON "db1" DURATION INF REPLICATION 1',
    ]
    with pytest.raises(ValueError, match="epoch"):
        await rec.store().query("SELECT 1", epoch="u")


async def test_query_results_parse_into_series_with_exact_floats() -> None:
    body = (
        b'{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"a":"b"},'
        b'"columns":["time","v"],"values":[[1,-0],[2,1],[3,0.1],[4,null]]}]},'
        b'{"statement_id":1}]}'
    )
    rec = Recorder(lambda _: httpx.Response(200, content=body))
    async with rec.store() as store:
        (series,) = await store.query("SELECT v FROM m GROUP BY a; SELECT v FROM x")
    assert series == Series(
        "m", {"a": "b"}, ("time", "v"), [[1, -0.0], [2, 1], [3, 0.1], [4, None]]
    )
    assert math.copysign(1.0, series.values[0][1]) == -1.0
    assert series.column("v")[2] == 0.1
    assert series.rows()[1] == {"time": 2, "v": 1}


@pytest.mark.parametrize(
    ("status", "body", "error", "match"),
    [
        (400, {"error": "error parsing query: found SELEC"}, QueryError, "parsing"),
        (
            200,
            {"results": [{"statement_id": 0, "error": "undefined function x()"}]},
            QueryError,
            "x()",
        ),
        (
            200,
            {"results": [{"statement_id": 0, "error": "database not found: db1"}]},
            TargetNotFound,
            "db1",
        ),
        (
            200,
            {"results": [{"statement_id": 0, "partial": True, "series": []}]},
            QueryError,
            "truncated",
        ),
        (200, {"error": "boom"}, QueryError, "boom"),
        (200, [1], QueryError, "object"),
    ],
)
async def test_query_errors(status: int, body: Any, error: type[Exception], match: str) -> None:
    rec = Recorder(answer(status, body))
    async with rec.store() as store:
        with pytest.raises(error, match=match):
            await store.query("SELECT * FROM m")


async def test_slow_reads_are_not_retried_but_writes_are() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    rec = Recorder(slow)
    async with rec.store(max_retries=2) as store:
        with pytest.raises(StoreUnavailable, match="timed out"):
            await store.query("SELECT * FROM m")
        assert len(rec.requests) == 1
        with pytest.raises(StoreUnavailable):
            await store.write(["m v=1 1"])
    assert len(rec.requests) == 4


async def test_ping() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with Recorder(answer(204)).store() as store:
        assert await store.ping()
    async with Recorder(refuse).store() as store:
        assert not await store.ping()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"database": 'x" ; DROP DATABASE y'}, "invalid database"),
        ({"retention_policy": "a b"}, "invalid retention policy"),
        ({"url": "ftp://h"}, "url"),
        ({"url": "http://u:p@h:8086"}, "credentials"),
        ({"username": "u"}, "together"),
        ({"username": "u", "password": "p", "token": "t"}, "either"),
        ({"timeout_s": 0}, "timeout"),
        ({"max_retries": -1}, ">= 0"),
        ({"retention_duration": "forever"}, "duration"),
    ],
)
def test_settings_validation(kwargs: dict[str, Any], match: str) -> None:
    options: dict[str, Any] = {"url": "http://h:8086", "database": "db"} | kwargs
    with pytest.raises(ValueError, match=match):
        InfluxSettings(**options)


def test_settings_repr_hides_secrets() -> None:
    text = repr(InfluxSettings("http://h", "db", username="u", password="hunter2"))
    assert "hunter2" not in text
    assert "tok3n" not in repr(InfluxSettings("http://h", "db", token="tok3n"))


# -- bad-point isolation, against a fake store -------------------------------------------


class FakeStore:
    """Rejects any batch holding a line with ``BAD`` (unnamed, like a type conflict)."""

    def __init__(self, *, name_lines: bool = False, drop_all: bool = False) -> None:
        self.stored: list[str] = []
        self.calls = 0
        self.name_lines = name_lines
        self.drop_all = drop_all

    async def write(self, lines: bytes | Sequence[str], *, precision: str = "ms") -> None:
        assert not isinstance(lines, bytes)
        self.calls += 1
        bad = [i for i, line in enumerate(lines) if "BAD" in line]
        if not bad:
            self.stored.extend(lines)
            return
        if self.drop_all:
            raise WriteRejected("x", status=400, server_message="beyond rp", dropped=len(lines))
        named = tuple(RejectedLine(lines[i], i, f"bad {i}") for i in bad) if self.name_lines else ()
        if named:
            self.stored.extend(line for line in lines if "BAD" not in line)
        raise WriteRejected(
            "x",
            status=400,
            server_message="conflict",
            line_errors=named,
            others_written=bool(named),
        )

    async def query(self, q: str, *, epoch: str = "ms") -> list[Series]:
        return []

    async def ensure_database(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("bad_at", [0, 1, 499, 736, 999])
async def test_bisection_isolates_one_bad_line_within_the_log2_bound(bad_at: int) -> None:
    lines = [f"m v={i} {i}" for i in range(1000)]
    lines[bad_at] = "BAD"
    fake = FakeStore()
    outcome = await write_isolating(fake, lines)
    assert outcome.written == 999
    assert outcome.rejected == [RejectedLine("BAD", bad_at, "conflict")]
    assert outcome.requests == fake.calls <= log2_bound(1000)
    assert sorted(fake.stored) == sorted(line for line in lines if line != "BAD")


@given(
    n=st.integers(1, 300),
    bad=st.sets(st.integers(0, 299), max_size=12),
    name_lines=st.booleans(),
)
@settings(max_examples=60, deadline=None)
async def test_isolation_stores_every_good_line_and_rejects_every_bad_one(
    n: int, bad: set[int], name_lines: bool
) -> None:
    lines = [f"BAD {i}" if i in bad else f"m v={i} {i}" for i in range(n)]
    fake = FakeStore(name_lines=name_lines)
    outcome = await write_isolating(fake, lines)
    bad_in = sorted(i for i in bad if i < n)
    assert [r.index for r in outcome.rejected] == bad_in
    assert outcome.written == n - len(bad_in) == len(fake.stored)
    assert sorted(fake.stored) == sorted(line for line in lines if "BAD" not in line)
    if bad_in:
        bound = 2 if name_lines else len(bad_in) * log2_bound(max(n, 2))
        assert outcome.requests <= bound


async def test_server_dropping_everything_costs_one_request() -> None:
    fake = FakeStore(drop_all=True)
    outcome = await write_isolating(fake, ["BAD 1", "BAD 2", "BAD 3"])
    assert outcome.requests == 1
    assert [(r.index, r.error) for r in outcome.rejected] == [
        (0, "beyond rp"),
        (1, "beyond rp"),
        (2, "beyond rp"),
    ]


async def test_isolation_propagates_outages_and_ignores_empty_batches() -> None:
    class Down(FakeStore):
        async def write(self, lines: bytes | Sequence[str], *, precision: str = "ms") -> None:
            raise StoreUnavailable("down", operation="write")

    assert (await write_isolating(Down(), [])).requests == 0
    with pytest.raises(StoreUnavailable):
        await write_isolating(Down(), ["m v=1 1"])


# -- the real influxd 1.6.7 --------------------------------------------------------------


def settings_for(server: InfluxServer, database: str, **kw: Any) -> InfluxSettings:
    if server.credentials is not None and "username" not in kw:
        kw["username"], kw["password"] = server.credentials
    return InfluxSettings(url=server.url, database=database, **kw)


@pytest.fixture
async def store(
    influxd: InfluxServer, unique_name: Callable[[str], str]
) -> AsyncIterator[InfluxStore]:
    s = InfluxStore(settings_for(influxd, unique_name("st")))
    await s.ensure_database()
    yield s
    await s.query(drop_database(s.settings.database))
    await s.aclose()


async def count(store: InfluxStore, measurement: str, field: str = "v") -> int:
    series = await store.query(f'SELECT count("{field}") FROM "{measurement}"')
    return int(series[0].values[0][1]) if series else 0


@pytest.mark.integration
async def test_round_trip_precisions_and_time_bounds(store: InfluxStore) -> None:
    assert await store.ping()
    lo, hi = TIME_BOUNDS["ms"]
    await store.write([encode_point(Point("m", {"a": "1"}, {"v": 1.5}, t)) for t in (lo, T0, hi)])
    await store.write(
        [encode_point(Point("m", {"a": "2"}, {"v": 2.5}, T0 * 1000), "us")], precision="us"
    )
    await store.write(
        encode_points([Point("m", {"a": "3"}, {"v": 3.5}, T0 // 1000)], "s"), precision="s"
    )
    got = await store.query(select_series("m", "v", group_by_tags=["a"]))
    assert [(s.tags["a"], s.values) for s in got] == [
        ("1", [[lo, 1.5], [T0, 1.5], [hi, 1.5]]),
        ("2", [[T0, 2.5]]),
        ("3", [[T0 // 1000 * 1000, 3.5]]),
    ]
    (ns,) = await store.query(select_series("m", "v", {"a": "2"}), epoch="ns")
    assert ns.values == [[T0 * 1_000_000, 2.5]]


@pytest.mark.integration
async def test_ensure_database_is_idempotent_and_creates_the_retention_policy(
    influxd: InfluxServer, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    db = unique_name("rp")
    async with InfluxStore(
        settings_for(influxd, db, retention_policy="short", retention_duration="2h")
    ) as s:
        await s.ensure_database()
        await s.ensure_database()
        now = int(time.time() * 1000)  # inside the 2h policy
        await s.write([f"m v=1 {now}"])
        assert await s.query('SELECT v FROM "short"."m"') == [
            Series("m", {}, ("time", "v"), [[now, 1]])
        ]
    async with InfluxStore(
        settings_for(influxd, db, retention_policy="short", retention_duration="3h")
    ) as s:
        with caplog.at_level(logging.WARNING, logger="cloud_service.storage.influx"):
            await s.ensure_database()
        assert "kept as is" in caplog.text
        (policies,) = await s.query(f'SHOW RETENTION POLICIES ON "{db}"')
        assert {r["name"]: r["duration"] for r in policies.rows()}["short"] == "2h0m0s"
        await s.query(drop_database(db))


@pytest.mark.integration
async def test_missing_database_and_retention_policy(
    influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    async with InfluxStore(settings_for(influxd, unique_name("nodb"))) as s:
        with pytest.raises(TargetNotFound, match="database not found"):
            await s.write(["m v=1 1"])
        with pytest.raises(TargetNotFound, match="database not found"):
            await s.query("SELECT * FROM m")
    async with InfluxStore(
        settings_for(influxd, unique_name("norp"), retention_policy="nope")
    ) as s:
        await s.query(f'CREATE DATABASE "{s.settings.database}"')
        requests = s.stats.requests
        with pytest.raises(TargetNotFound, match="retention policy not found"):
            await s.write(["m v=1 1"])  # a 500 from influxd 1.6.7: must not be retried
        assert s.stats.requests == requests + 1
        await s.query(drop_database(s.settings.database))


@pytest.mark.integration
async def test_one_type_conflict_in_500_lines(store: InfluxStore) -> None:
    lines = [f"m,signal=s{i % 7} v={i}.25 {T0 + i}" for i in range(500)]
    lines[317] = f'm,signal=s2 v="text" {T0 + 317}'
    outcome = await store.write_isolating(lines)
    assert outcome.written == 499
    assert [(r.index, r.line) for r in outcome.rejected] == [(317, lines[317])]
    assert "field type conflict" in outcome.rejected[0].error
    assert outcome.requests <= log2_bound(500)
    assert await count(store, "m") == 499


@pytest.mark.integration
async def test_fresh_shard_type_conflict_stores_nothing_without_isolation(
    store: InfluxStore,
) -> None:
    with pytest.raises(WriteRejected) as info:
        await store.write([f"m v=1 {T0}", f'm v="s" {T0 + 1}', f"m v=3 {T0 + 2}"])
    assert info.value.server_message == "field type conflict"
    assert not info.value.partial
    assert info.value.line_errors == ()
    assert await count(store, "m") == 0


@pytest.mark.integration
async def test_unparsable_lines_are_named_and_cost_one_request(store: InfluxStore) -> None:
    lines = [f"m v={i}.0 {T0 + i}" for i in range(100)]
    lines[10] = f"m v= {T0 + 10}"
    lines[60] = f"m v=NaN {T0 + 60}"
    with pytest.raises(WriteRejected) as info:
        await store.write(lines)
    assert [e.index for e in info.value.line_errors] == [10, 60]
    assert info.value.others_written
    outcome = await store.write_isolating(lines)
    assert outcome.requests == 1
    assert outcome.written == 98
    assert [(r.index, r.error) for r in outcome.rejected] == [
        (10, f"unable to parse 'm v= {T0 + 10}': missing field value"),
        (60, f"unable to parse 'm v=NaN {T0 + 60}': invalid number"),
    ]
    assert await count(store, "m") == 98


@pytest.mark.integration
async def test_points_beyond_retention_are_rejected_without_a_search(store: InfluxStore) -> None:
    db = store.settings.database
    await store.query(create_retention_policy("hour", db, "1h"))
    async with InfluxStore(InfluxSettings(store.settings.url, db, retention_policy="hour")) as s:
        old = [f"m v={i}.0 {1000 + i}" for i in range(64)]
        outcome = await s.write_isolating(old)
        assert (outcome.written, len(outcome.rejected), outcome.requests) == (0, 64, 1)
        assert "points beyond retention policy" in outcome.rejected[0].error
        recent = int(time.time() * 1000)
        mixed = [f"m v={i}.0 {recent - i if i % 2 else 1000 + i}" for i in range(32)]
        outcome = await s.write_isolating(mixed)
        assert outcome.written == 16
        assert [r.index for r in outcome.rejected] == list(range(0, 32, 2))


@pytest.mark.integration
async def test_a_bad_line_echoed_with_control_characters_is_isolated(store: InfluxStore) -> None:
    # influxd 1.6.7 copies the line into X-Influxdb-Error; h11 refuses the NUL in it.
    lines = [f"m v=1 {T0}", f"m\x00 v= {T0}", f"m v=2 {T0 + 1}"]
    with pytest.raises(WriteRejected) as info:
        await store.write(lines)
    assert info.value.status is None
    assert store.stats.retries == 0
    outcome = await store.write_isolating(lines)
    assert (outcome.written, [r.index for r in outcome.rejected]) == (2, [1])
    assert await count(store, "m") == 2


TAG_KEYS = ("site", "a b", "c,d", "e=f", 'g"h', "ü😀")
# Text drawn half the time from the characters line protocol must escape (plain random
# Unicode hardly ever hits them). Names and tag values exclude ASCII controls but tab.
SPECIAL = [",", "=", " ", "\\", '"', "'", "#", "\t", "😀", "é", "a", "0"]
ASCII_CONTROLS = "".join(map(chr, [*range(0x09), *range(0x0A, 0x20), 0x7F]))
safe_text = st.one_of(
    st.text(st.sampled_from([*SPECIAL, "\x00", "\x1b"]), max_size=12),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r"), max_size=20),
)
tag_values = st.one_of(
    st.text(st.sampled_from(SPECIAL), max_size=12),
    st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters=ASCII_CONTROLS), max_size=20
    ),
).filter(lambda s: not s.endswith("\\"))
field_sets = st.fixed_dictionaries(
    {},
    optional={
        "f": st.floats(allow_nan=False, allow_infinity=False),
        "i": st.integers(INT_MIN, INT_MAX),
        "s": safe_text,
        "b": st.booleans(),
    },
).filter(bool)
records = st.lists(
    st.tuples(st.dictionaries(st.sampled_from(TAG_KEYS), tag_values, max_size=3), field_sets),
    min_size=1,
    max_size=8,
)


def same(expected: Any, got: Any) -> bool:
    if expected is None or isinstance(expected, bool | str):
        return type(got) is type(expected) and got == expected
    if isinstance(expected, float):  # JSON writes integral floats as ints: compare the bits
        return (
            isinstance(got, int | float)
            and not isinstance(got, bool)
            and float(got).hex() == expected.hex()
        )
    return type(got) is int and got == expected


@pytest.mark.integration
@pytest.mark.slow
def test_property_anything_written_reads_back_identical(
    influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    db = unique_name("prop")
    with asyncio.Runner() as runner:
        store = InfluxStore(settings_for(influxd, db))
        runner.run(store.ensure_database())
        counter = iter(range(10**6))

        @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(batch=records)
        def check(batch: list[tuple[dict[str, str], dict[str, Any]]]) -> None:
            measurement = f"m{next(counter)}"
            points = [
                Point(measurement, tags, fields, T0 + i) for i, (tags, fields) in enumerate(batch)
            ]
            runner.run(store.write(encode_points(points)))
            got = runner.run(store.query(f'SELECT * FROM "{measurement}" GROUP BY *'))
            rows = {}
            for series in got:
                tags = {k: v for k, v in series.tags.items() if v != ""}
                for row in series.rows():
                    rows[row.pop("time")] = (tags, row)
            assert len(rows) == len(batch)
            for i, (tags, fields) in enumerate(batch):
                got_tags, got_fields = rows[T0 + i]
                assert got_tags == {k: v for k, v in tags.items() if v != ""}
                for key in ("f", "i", "s", "b"):
                    if key in got_fields or key in fields:
                        assert same(fields.get(key), got_fields.get(key)), (key, fields, got_fields)

        try:
            check()
        finally:
            runner.run(store.query(drop_database(db)))
            runner.run(store.aclose())


@pytest.mark.integration
async def test_user_password_auth(
    fresh_influxd: Callable[..., InfluxServer], unique_name: Callable[[str], str]
) -> None:
    server = fresh_influxd(auth=True)
    db = unique_name("auth")
    async with InfluxStore(settings_for(server, db)) as s:
        await s.ensure_database()
        await s.write([f"m v=1 {T0}"])
        assert (await s.query("SELECT v FROM m"))[0].values == [[T0, 1]]
    wrong = settings_for(server, db, username=server.admin_user, password="wrong")
    async with InfluxStore(wrong) as s:
        with pytest.raises(StoreAuthError, match="authorization failed") as info:
            await s.write([f"m v=2 {T0}"])
        assert info.value.status == 401
        assert s.stats.requests == 1
        with pytest.raises(StoreAuthError):
            await s.query("SELECT v FROM m")
    async with InfluxStore(InfluxSettings(server.url, db)) as s:
        assert await s.ping()  # /ping needs no credentials, even with auth on
        with pytest.raises(StoreAuthError, match="unable to parse authentication credentials"):
            await s.write([f"m v=2 {T0}"])
    async with InfluxStore(InfluxSettings(server.url, db, token="any")) as s:
        # 1.6.7 predates "Authorization: Token": the 2.x scheme is refused, not ignored.
        with pytest.raises(StoreAuthError):
            await s.write([f"m v=2 {T0}"])


@pytest.mark.integration
async def test_outage_then_recovery(
    fresh_influxd: Callable[..., InfluxServer], unique_name: Callable[[str], str]
) -> None:
    server = fresh_influxd()
    fast = {"max_retries": 3, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "timeout_s": 2.0}
    async with InfluxStore(settings_for(server, unique_name("down"), **fast)) as s:
        await s.ensure_database()
        await s.write([f"m v=1 {T0}"])  # leaves a pooled keep-alive connection behind
        server.kill()
        assert not await s.ping()
        with pytest.raises(StoreUnavailable) as info:
            await s.write([f"m v=2 {T0 + 1}"])
        assert info.value.attempts == 4
        assert s.stats.retries == 3
        server.restart()
        assert await s.ping()
        await s.write([f"m v=2 {T0 + 1}"])
        got = await s.query(select_series("m", "v"))
        assert got[0].values == [[T0, 1], [T0 + 1, 2]]  # the first write survived SIGKILL (WAL)


def test_json_keeps_negative_zero_only_where_it_is() -> None:
    assert json.dumps(_loads(b'{"a":[-0,-0.5,10,-0]}')) == '{"a": [-0.0, -0.5, 10, -0.0]}'
    assert _loads(b'{"a":[0]}') == {"a": [0]}


async def test_storage_errors_carry_structured_fields() -> None:
    rec = Recorder(answer(403, {"error": "bob not authorized"}))
    async with rec.store() as store:
        with pytest.raises(StorageError) as info:
            await store.write(["m v=1 1"])
    exc = info.value
    assert (exc.operation, exc.status, exc.server_message, exc.retryable) == (
        "write",
        403,
        "bob not authorized",
        False,
    )
