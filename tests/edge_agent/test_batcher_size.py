"""The batcher never builds a batch the cloud would refuse as a whole (too large, too many
readings): it closes the open batch before the next reading could push it past the limits
the cloud applies (``shared.codec``)."""

from __future__ import annotations

import sys

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.batcher import Batcher
from shared.codec import (
    ENVELOPE_MAX_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_READINGS,
    Limits,
    TelemetryDecoder,
    encode,
)
from shared.ids import ID_REGEX
from shared.messages import Quality, Reading, TelemetryBatch

NOW = 1_790_000_000_000
LONG_ID = "s" * 64
WORST_VALUE = -sys.float_info.max  # the longest float encoding: -1.7976931348623157e+308


def worst_case(batch: TelemetryBatch) -> bytes:
    """``batch`` as the agent may send it, with its envelope fields at their longest."""
    return encode(
        msgspec.structs.replace(
            batch,
            gateway="g" * 64,
            boot="b" * 64,
            seq=2**63 - 1,
            first_unacked=2**63 - 1,
            historical=False,  # "false" is the longer one
            clock_step_ms=-(2**63),
        )
    )


def test_long_readings_close_a_batch_before_the_payload_limit() -> None:
    readings = [Reading(LONG_ID, NOW - i, WORST_VALUE, Quality.UNCERTAIN) for i in range(10_000)]
    # The data does reach the limit: 10,000 of these readings in one batch would be refused.
    too_big = TelemetryBatch(gateway="gw-01", boot="b1", seq=1, readings=readings)
    assert len(encode(too_big)) > MAX_PAYLOAD_BYTES
    b = Batcher(gateway="gw-01", boot="b1", max_readings=10_000, max_age_ms=60_000)
    out = b.add(readings, now_ms=0) + b.flush()
    assert len(out) == 2
    assert [x.seq for x in out] == [1, 2]
    assert [r for x in out for r in x.readings] == readings  # nothing lost, order kept
    decoder = TelemetryDecoder()  # the cloud's default limits
    for x in out:
        payload = worst_case(x)
        assert len(payload) <= MAX_PAYLOAD_BYTES
        decoded = decoder.decode(payload, now_ms=NOW)  # raises if refused as a whole
        assert decoded.rejected == []
    # ... and the first batch is not closed needlessly early: one more reading would not fit
    first = out[0]
    one_more = [*first.readings, readings[len(first.readings)]]
    assert len(worst_case(msgspec.structs.replace(first, readings=one_more))) > MAX_PAYLOAD_BYTES


def test_max_readings_is_capped_at_what_the_cloud_accepts() -> None:
    b = Batcher(gateway="gw-01", boot="b1", max_readings=MAX_READINGS + 500, max_age_ms=60_000)
    readings = [Reading("s", NOW - i, 1.0) for i in range(MAX_READINGS + 1)]
    out = b.add(readings, now_ms=0)
    assert [len(x.readings) for x in out] == [MAX_READINGS]
    assert b.pending == 1
    assert Limits().max_readings == MAX_READINGS


signals = st.from_regex(ID_REGEX, fullmatch=True)
values = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))
reading_lists = st.lists(
    st.builds(
        Reading,
        signals,
        st.integers(-9_223_372_036_854, 9_223_372_036_854),
        values,
        st.sampled_from(Quality),
    ),
    max_size=20,
)


@settings(deadline=None)
@given(
    chunks=st.lists(st.tuples(reading_lists, st.booleans()), max_size=4),
    limit=st.integers(ENVELOPE_MAX_BYTES + 120, ENVELOPE_MAX_BYTES + 800),  # a reading fits
    max_readings=st.integers(1, 30),
)
def test_every_batch_fits_whatever_the_readings(
    chunks: list[tuple[list[Reading], bool]], limit: int, max_readings: int
) -> None:
    """With the payload limit made small (so hypothesis reaches it), every batch fits in it,
    no reading is lost or reordered per lane, and a batch only closes early by size when its
    next reading would not have fitted."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("edge_agent.batcher.MAX_PAYLOAD_BYTES", limit)
        b = Batcher(gateway="gw-01", boot="b1", max_readings=max_readings, max_age_ms=10**9)
        out: list[TelemetryBatch] = []
        sent: dict[bool, list[Reading]] = {False: [], True: []}
        for readings, historical in chunks:
            out += b.add(readings, now_ms=0, historical=historical)
            sent[historical] += readings
        out += b.flush()
    for historical in (False, True):
        lane = [x for x in out if x.historical is historical]
        assert [r for x in lane for r in x.readings] == sent[historical]
        for i, x in enumerate(lane):
            following = lane[i + 1] if i + 1 < len(lane) else None
            assert x.readings
            assert len(worst_case(x)) <= limit
            if following is not None and len(x.readings) < max_readings:
                grown = msgspec.structs.replace(x, readings=[*x.readings, following.readings[0]])
                assert len(worst_case(grown)) > limit
