"""Tag values with line-protocol and InfluxQL metacharacters, and Unicode, stored and read back
exactly through the store (real influxd).

Ids are restricted by the contract, so ingest's own tags never carry these characters; but the
store is the one place every tag passes, and a future tag (a unit, a description) must not be
able to break a line or a query. Also a string field with the same characters.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ingest_support import influx_store

from cloud_service.storage.influxql import quote_literal, select_series
from cloud_service.storage.line_protocol import LineProtocolError, Point, encode_point
from firmware_sim.stack import InfluxServer

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000
NASTY = [
    "a,b",
    "k=v",
    "two words",
    "back\\slash",
    'quote"d',
    "single'quote",
    " lead and trail ",
    "Größe ÄÖÜ",
    "数量 – 仓库",
    "emoji 📦🚚",
    ', = \\ " all',
]


async def test_tag_values_with_metacharacters_round_trip_exactly(
    influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    database = unique_name("db")
    async with influx_store(influxd, database) as store:
        await store.ensure_database()
        points = [
            Point(
                "stock_level",
                {"site": "s1", "location": value, "sku": f"sku {i}"},
                {"value": float(i), "note": value},
                T0 + i,
            )
            for i, value in enumerate(NASTY)
        ]
        await store.write([encode_point(p) for p in points])

        # Read back by grouping on the tag: every value comes back exactly as written.
        series = await store.query(
            'SELECT "value", "note" FROM "stock_level" GROUP BY "location", "sku"'
        )
        got = {(s.tags["location"], s.tags["sku"], row[2]) for s in series for row in s.values}
        assert got == {(v, f"sku {i}", v) for i, v in enumerate(NASTY)}

        # And each can be selected by an escaped literal (no injection, no mismatch).
        for i, value in enumerate(NASTY):
            q = select_series("stock_level", "value", {"location": value})
            (s,) = await store.query(q)
            assert s.values == [[T0 + i, float(i)]]
        hostile = "x' OR location =~ /.*/ OR location = 'y"
        q = f'SELECT "value" FROM "stock_level" WHERE location = {quote_literal(hostile)}'
        assert await store.query(q) == []


def test_a_tag_value_influxdb_cannot_read_back_is_refused_not_mangled() -> None:
    # InfluxDB 1.x cannot parse a tag value ending in a backslash: refuse it loudly.
    with pytest.raises(LineProtocolError, match="backslash"):
        encode_point(Point("m", {"t": "trailing\\"}, {"value": 1.0}, T0))
