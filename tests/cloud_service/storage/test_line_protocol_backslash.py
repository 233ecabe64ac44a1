"""Names with a backslash before a space, comma, '=' or '"': influxd 1.6.7 drops that
backslash in measurement names and field keys (another name is stored, silently) or refuses
the whole body, so the encoder refuses them; tag keys and tag values keep it and are written.

Pure properties first, then every accepted name round-trips through the real influxd.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_service.storage.influx import InfluxStore
from cloud_service.storage.line_protocol import (
    LineProtocolError,
    Point,
    encode_lines,
    encode_point,
    escape_key,
    escape_measurement,
)

T0 = 1_700_000_000_000
LOOKALIKES = ["a\\ b", "a\\,b", "a\\=b", 'a\\"b', "a\\\\,b", "a\\\\ b", "a\\\\=b", "\\ a"]
BACKSLASH_BEFORE_SPECIAL = re.compile(r'\\[ ,="]')
names = st.text(st.sampled_from(list('ab\\ ,="é#')), min_size=1, max_size=8)


@pytest.mark.parametrize("name", LOOKALIKES)
def test_measurements_and_field_keys_with_a_backslash_escape_are_refused(name: str) -> None:
    with pytest.raises(LineProtocolError, match="backslash before"):
        encode_point(Point(name, {"t": "x"}, {"f": 1.0}, T0))
    with pytest.raises(LineProtocolError, match="backslash before"):
        encode_point(Point("m", {"t": "x"}, {name: 1.0}, T0))
    with pytest.raises(LineProtocolError, match="backslash before"):
        encode_lines(["m"], [1.0], [T0], field=name)


@pytest.mark.parametrize("name", LOOKALIKES)
def test_tag_keys_and_values_with_a_backslash_escape_are_written(name: str) -> None:
    line = encode_point(Point("m", {name: name}, {"f": 1.0}, T0))
    assert line.startswith("m,")


@pytest.mark.parametrize(
    "tags",
    [{'k\\ \\="': "x"}, {"t": '\\ \\="'}, {"a": "x\\ y", "b": '\\="z'}],
)
def test_a_series_key_influxd_would_read_a_quote_in_is_refused(tags: dict[str, str]) -> None:
    """influxd finds a line's end by a simpler scan than it parses the line with: there a
    backslash pairs with whatever follows, so an input backslash before an (escaped) space
    ends the key early and a later ``="`` opens a quote that swallows the next line."""
    with pytest.raises(LineProtocolError, match="join"):
        encode_point(Point("m", tags, {"f": 1.0}, T0))


def test_a_string_field_that_would_join_lines_after_such_a_key_is_refused() -> None:
    tags = {"t": "\\ \\,\\,\\,x"}  # influxd's line scan: fields start, three commas
    assert encode_point(Point("m", tags, {"f": "plain"}, T0))
    with pytest.raises(LineProtocolError, match="join"):
        encode_point(Point("m", tags, {"f": "a=b=c=d"}, T0))


def test_other_backslashes_are_still_fine_in_names() -> None:
    assert escape_measurement("a\\b") == "a\\b"
    assert escape_key("a\\\\b", "field key") == "a\\\\b"


@given(names)
def test_a_measurement_or_field_key_is_refused_exactly_when_influxd_would_change_it(
    name: str,
) -> None:
    lookalike = bool(BACKSLASH_BEFORE_SPECIAL.search(name))
    for encode in (escape_measurement, lambda n: escape_key(n, "field key")):
        try:
            encode(name)
        except LineProtocolError as exc:
            # refused for this reason, or for one of the older rules
            assert lookalike or name.endswith("\\") or name.startswith("#"), exc
        else:
            assert not lookalike


# -- the real influxd 1.6.7 ---------------------------------------------------------------


@pytest.fixture
def store(influx_store: InfluxStore) -> InfluxStore:
    return influx_store


def accepted(encode: Callable[[str], object], candidates: list[str]) -> list[str]:
    out = []
    for name in candidates:
        try:
            encode(name)
        except LineProtocolError:
            continue
        out.append(name)
    return out


def encoded(point: Point) -> str | None:
    try:
        return encode_point(point)
    except LineProtocolError:
        return None


#: What the examples wrote so far, per database (hypothesis reuses the fixture's database).
_WRITTEN: dict[str, dict[str, set[str]]] = {}


@pytest.mark.integration
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(candidates=st.lists(names, max_size=6, unique=True).map(lambda c: [*c, *LOOKALIKES]))
async def test_every_accepted_name_round_trips_through_influxd(
    store: InfluxStore, candidates: list[str]
) -> None:
    """Measurements, field keys, tag keys and tag values made of the characters that matter:
    influxd stores exactly the names the encoder accepts, no other and none changed."""
    measurements = accepted(escape_measurement, candidates)
    field_keys = accepted(lambda n: escape_key(n, "field key"), candidates)
    assert not set(LOOKALIKES) & set(measurements + field_keys)
    lines = [encode_point(Point(m, {"t": "x"}, {"f": 1.0}, T0)) for m in measurements]
    lines.append(encode_point(Point("fk", {}, dict.fromkeys(field_keys or ["f"], 1.0), T0)))
    tag_keys: list[str] = []
    tag_values: list[str] = []
    for name in candidates:
        if name != "i" and (tk := encoded(Point("tk", {name: "x", "i": name}, {"f": 1.0}, T0))):
            lines.append(tk)
            tag_keys.append(name)
        if tv := encoded(Point("tv", {"t": name}, {"f": 1.0, "s": name}, T0)):
            lines.append(tv)
            tag_values.append(name)
    assert set(LOOKALIKES) <= set(tag_keys) & set(tag_values)
    await store.write(lines)  # one body: a line influxd refused would fail it

    written = _WRITTEN.setdefault(
        store.settings.database, {"m": {"fk", "tk", "tv"}, "fk": set(), "tk": {"i"}, "tv": set()}
    )
    written["m"] |= set(measurements)
    written["fk"] |= set(field_keys or ["f"])
    written["tk"] |= set(tag_keys)
    written["tv"] |= set(tag_values)
    (shown,) = await store.query("SHOW MEASUREMENTS")
    assert {row[0] for row in shown.values} == written["m"]
    (fk,) = await store.query('SHOW FIELD KEYS FROM "fk"')
    assert {row[0] for row in fk.values} == written["fk"]
    (tk,) = await store.query('SHOW TAG KEYS FROM "tk"')
    assert {row[0] for row in tk.values} == written["tk"]
    (tv,) = await store.query('SHOW TAG VALUES FROM "tv" WITH KEY = "t"')
    assert {row[1] for row in tv.values} == written["tv"]
