"""InfluxQL builders: identifiers from the allow-list only, literals that cannot be escaped from.

The pure tests check the literal against a port of the InfluxQL scanner's ``ScanString``
(influxql/scanner.go); the integration test proves it against influxd itself.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_service.storage.influx import InfluxStore
from cloud_service.storage.influxql import (
    create_database,
    create_retention_policy,
    drop_database,
    duration_literal,
    quote_ident,
    quote_literal,
    select_aggregate,
    select_series,
    time_literal,
    where_clause,
)
from cloud_service.storage.line_protocol import series_key
from shared.ids import InvalidIdError

INJECTIONS = [
    'x" ; DROP DATABASE y',
    "a' OR '1'='1",
    'm"; DROP MEASUREMENT "x',
    "x\nDROP DATABASE y",
    "",
    "-lead",
    "ü",
    "a b",
    "a" * 65,
]


def scan_string(text: str, start: int = 0) -> tuple[str, int]:
    """Port of influxql ``ScanString``: (value, index after the closing quote)."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    escapes = {"n": "\n", "\\": "\\", '"': '"', "'": "'"}
    while True:
        if i >= len(text) or text[i] == "\n":
            raise ValueError("bad string")
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt not in escapes:
                raise ValueError("bad escape")
            out.append(escapes[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1


@pytest.mark.parametrize("name", INJECTIONS)
def test_identifiers_outside_the_allow_list_are_refused(name: str) -> None:
    with pytest.raises(InvalidIdError):
        quote_ident(name)
    with pytest.raises(InvalidIdError):
        select_series(name, "value")
    with pytest.raises(InvalidIdError):
        select_series("m", name)
    with pytest.raises(InvalidIdError):
        select_series("m", "value", {name: "x"})
    with pytest.raises(InvalidIdError):
        create_database(name)


def test_quote_ident_quotes_valid_ids() -> None:
    assert quote_ident("site-1.a:b_c") == '"site-1.a:b_c"'


def test_quote_literal_escapes_backslash_quote_and_newline() -> None:
    assert quote_literal("a' OR '1'='1") == "'a\\' OR \\'1\\'=\\'1'"
    assert quote_literal("c:\\dir\\") == "'c:\\\\dir\\\\'"
    assert quote_literal("x\ny") == "'x\\ny'"
    with pytest.raises(ValueError, match="carriage"):
        quote_literal("x\ry")
    with pytest.raises(TypeError):
        quote_literal(5)  # type: ignore[arg-type]


@given(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r")))
def test_literal_scans_back_to_itself_and_ends_where_it_should(value: str) -> None:
    literal = quote_literal(value)
    query = f"SELECT * FROM m WHERE t = {literal} AND x = 1"
    start = query.index("'")
    scanned, end = scan_string(query, start)
    assert scanned == value
    assert query[end:] == " AND x = 1"  # nothing leaked out of the literal


def test_time_literal() -> None:
    assert time_literal(1_700_000_000_000) == "1700000000000ms"
    assert time_literal(-5) == "-5ms"
    for bad in (1.5, True, "1"):
        with pytest.raises(TypeError):
            time_literal(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="range"):
        time_literal(9_223_372_036_855)


def test_duration_literal() -> None:
    assert duration_literal("30d") == "30d"
    assert duration_literal("inf") == "INF"
    for bad in ("0d", "30", "d", "1y", "30d; DROP", "-1h", "1.5h"):
        with pytest.raises(ValueError, match="duration"):
            duration_literal(bad)


def test_select_series_text() -> None:
    q = select_series("reading", "value", {"site": "s'1", "gateway": "gw"}, 1000, 2000)
    assert q == (
        'SELECT "value" FROM "reading" WHERE "gateway" = \'gw\' AND "site" = \'s\\\'1\' '
        "AND time >= 1000ms AND time < 2000ms"
    )
    assert select_series("m", "v") == 'SELECT "v" FROM "m"'
    assert select_series("m", "v", retention_policy="rp1", group_by_tags=["a"], limit=3) == (
        'SELECT "v" FROM "rp1"."m" GROUP BY "a" LIMIT 3'
    )
    with pytest.raises(ValueError, match="limit"):
        select_series("m", "v", limit=0)


def test_select_aggregate_text() -> None:
    q = select_aggregate("m", "v", "mean", "1m", where_tags={"a": "b"}, start_ms=0, end_ms=60_000)
    assert q == (
        'SELECT mean("v") AS "mean" FROM "m" WHERE "a" = \'b\' AND time >= 0ms '
        "AND time < 60000ms GROUP BY time(1m) fill(none)"
    )
    with pytest.raises(ValueError, match="aggregate"):
        select_aggregate("m", "v", "mean(v)) ; DROP", "1m")
    with pytest.raises(ValueError, match="fill"):
        select_aggregate("m", "v", "mean", "1m", fill="0); DROP")
    with pytest.raises(ValueError, match="duration"):
        select_aggregate("m", "v", "mean", "1m) ; DROP")


def test_where_clause_empty() -> None:
    assert where_clause() == ""


def test_database_statements() -> None:
    assert create_database("db1") == 'CREATE DATABASE "db1"'
    assert drop_database("db1") == 'DROP DATABASE "db1"'
    assert create_retention_policy("rp", "db", "30d", shard_duration="1d", default=True) == (
        'CREATE RETENTION POLICY "rp" ON "db" DURATION 30d REPLICATION 1 SHARD DURATION 1d DEFAULT'
    )
    with pytest.raises(ValueError, match="replication"):
        create_retention_policy("rp", "db", replication=0)


# -- against the real server -------------------------------------------------------------

NASTY_VALUES = [
    "a' OR '1'='1",
    "c:\\dir\\x",
    "\\'",
    "it's",
    'x" ; DROP DATABASE y',
    "' OR \"signal\" =~ /.*/ OR '",
    "tab\tand space",
    "emoji 😀, =",
    "\\n",
]


@pytest.fixture
def store(influx_store: InfluxStore) -> InfluxStore:
    return influx_store


@pytest.mark.integration
async def test_literals_stay_literals_on_the_server(store: InfluxStore) -> None:
    lines = [
        f"{series_key('reading', {'signal': v})} value={float(i)} {1_000 + i}"
        for i, v in enumerate([*NASTY_VALUES, "other"])
    ]
    await store.write(lines)
    for i, value in enumerate(NASTY_VALUES):
        got = await store.query(select_series("reading", "value", {"signal": value}, 0, 10_000))
        assert len(got) == 1, value
        assert got[0].values == [[1_000 + i, float(i)]], value
        grouped = await store.query(
            select_series("reading", "value", {"signal": value}, group_by_tags=["signal"])
        )
        assert [s.tags for s in grouped] == [{"signal": value}]
    databases = await store.query("SHOW DATABASES")
    assert [store.settings.database] in databases[0].values
