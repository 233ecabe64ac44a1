"""Round trips for every message type and a reason for every way a payload can be wrong."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from contract_strategies import MESSAGES, NOW_MS, bad_ids, batches, ids, readings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.codec import (
    Limits,
    MessageDecoder,
    TelemetryDecoder,
    batch_identity,
    encode,
    make_reading,
)
from shared.errors import ContractError, Reason
from shared.messages import Quality, Reading, TelemetryBatch

DECODER = TelemetryDecoder()
WHOLE_BATCH_REASONS = set(Reason)


def decode(payload: bytes, **kw: Any) -> Any:
    return DECODER.decode(payload, now_ms=NOW_MS, **kw)


def batch_json(readings: list[Any], **envelope: Any) -> bytes:
    doc = {"gateway": "gw-1", "boot": "b1", "seq": 7, "readings": readings, **envelope}
    return json.dumps(doc, allow_nan=True).encode()


@pytest.mark.parametrize("kind", list(MESSAGES), ids=lambda k: k.__name__)
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_message_type_round_trips(kind: type[Any], data: st.DataObject) -> None:
    message = data.draw(MESSAGES[kind])
    assert decode_any(kind, encode(message)) == message


def decode_any(kind: type[Any], payload: bytes) -> Any:
    if kind is TelemetryBatch:
        decoded = decode(payload)
        assert decoded.rejected == []
        return decoded.batch
    return MessageDecoder(kind).decode(payload)


def test_message_decoder_refuses_telemetry() -> None:
    with pytest.raises(TypeError):
        MessageDecoder(TelemetryBatch)


@given(batches)
def test_telemetry_round_trips_with_no_rejection(batch: TelemetryBatch) -> None:
    decoded = decode(encode(batch))
    assert decoded.rejected == []
    assert decoded.batch == batch


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_contract_errors(payload: bytes) -> None:
    try:
        decode(payload)
    except ContractError as exc:
        assert exc.reason in WHOLE_BATCH_REASONS


@pytest.mark.parametrize("kind", list(MESSAGES), ids=lambda k: k.__name__)
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_bytes_that_are_not_utf8_in_any_string_are_a_contract_error(
    kind: type[Any], data: st.DataObject
) -> None:
    # msgspec raises UnicodeDecodeError (not its DecodeError) for these: it once escaped every
    # decoder and crashed ingest on each redelivery of the message
    payload = encode(data.draw(MESSAGES[kind]))
    quotes = [i for i, b in enumerate(payload) if b == ord('"')]
    at = data.draw(st.sampled_from(quotes)) + 1
    junk = data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc", b"\xf8"]))
    hostile = payload[:at] + junk + payload[at:]
    try:
        decode_any(kind, hostile) if kind is not TelemetryBatch else decode(hostile)
    except ContractError as exc:
        assert exc.reason in WHOLE_BATCH_REASONS
    batch_identity(hostile)  # never raises


@given(batches, st.data())
def test_truncated_json_is_malformed(batch: TelemetryBatch, data: st.DataObject) -> None:
    payload = encode(batch)
    cut = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    with pytest.raises(ContractError) as info:
        decode(payload[:cut])
    assert info.value.reason is Reason.MALFORMED


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    field=st.sampled_from(["gateway", "boot", "seq", "readings", "historical"]), value=JSON_VALUES
)
def test_wrong_envelope_types_are_rejected_whole(field: str, value: Any) -> None:
    good = {"gateway": "gw-1", "boot": "b1", "seq": 7, "readings": [], "historical": False}
    doc = {**good, field: value}
    try:
        decoded = decode(json.dumps(doc).encode())
    except ContractError as exc:
        expected = {Reason.SCHEMA, Reason.BAD_ID, Reason.NON_FINITE}
        assert exc.reason in expected
        if field in ("gateway", "boot") and isinstance(value, str):
            assert exc.reason is Reason.BAD_ID
        return
    if decoded.rejected:  # a readings list whose items are judged one by one
        assert field == "readings"
        assert len(decoded.rejected) + len(decoded.batch.readings) == len(value)
    else:  # accepted only when the value was a valid one for that field
        assert msgspec.convert(doc, TelemetryBatch) == decoded.batch


@given(st.lists(readings(), min_size=1, max_size=30), st.data())
def test_a_bad_reading_is_rejected_alone_with_its_reason(
    good: list[Reading], data: st.DataObject
) -> None:
    bad_kind = data.draw(
        st.sampled_from(
            [
                *("nan", "inf", "-inf", "huge", "bad_id", "type", "missing", "old", "future"),
                *("not_utf8", "surrogate"),
            ]
        )
    )
    items: list[Any] = [list(msgspec.to_builtins(r)) for r in good]
    pos = data.draw(st.integers(min_value=0, max_value=len(items)))
    bad: list[Any] = ["sig-x", NOW_MS, 1.5, 0]
    expected = {
        "nan": Reason.NON_FINITE,
        "inf": Reason.NON_FINITE,
        "-inf": Reason.NON_FINITE,
        "huge": Reason.NON_FINITE,
        "bad_id": Reason.BAD_ID,
        "type": Reason.SCHEMA,
        "missing": Reason.MISSING_VALUE,
        "old": Reason.TIMESTAMP_OUT_OF_WINDOW,
        "future": Reason.TIMESTAMP_OUT_OF_WINDOW,
        "not_utf8": Reason.MALFORMED,  # bytes that are not UTF-8 inside the signal's string
        "surrogate": Reason.BAD_ID,  # a lone surrogate escape: JSON, but no id
    }[bad_kind]
    if bad_kind in ("nan", "inf", "-inf"):
        bad[2] = float(bad_kind)
    elif bad_kind == "bad_id":
        bad[0] = data.draw(bad_ids)
    elif bad_kind == "type":
        wrong: list[list[Any]] = [
            [[1], {"a": 1}, 1, True, None],  # signal
            [[1], "x", 1.5, None, True],  # ts
            [[1], {"a": 1}, "x", True],  # value
            [[1], "x", 7, -1, None, 1.5],  # quality
        ]
        at = data.draw(st.integers(0, 3))
        bad[at] = data.draw(st.sampled_from(wrong[at]))
    elif bad_kind == "missing":
        bad[2] = None
    elif bad_kind == "surrogate":
        bad[0] = "\ud800"
    elif bad_kind == "not_utf8":
        bad[0] = "utf8-marker"
    elif bad_kind == "old":
        bad[1] = NOW_MS - Limits().max_past_ms - data.draw(st.integers(1, 10**12))
    elif bad_kind == "future":
        bad[1] = NOW_MS + Limits().max_future_ms + data.draw(st.integers(1, 10**12))
    if bad_kind == "huge":
        bad[0] = "huge-marker"
    items.insert(pos, bad)
    payload = batch_json(items)
    if bad_kind == "huge":  # 1e999 is valid JSON syntax that no float can hold
        payload = payload.replace(
            b'"huge-marker", ' + str(NOW_MS).encode() + b", 1.5",
            b'"h", ' + str(NOW_MS).encode() + b", 1e999",
        )
    if bad_kind == "not_utf8":
        payload = payload.replace(b'"utf8-marker"', b'"s\xff\xfe"')
    decoded = decode(payload)
    assert decoded.batch.readings == good
    assert [(r.index, r.reason) for r in decoded.rejected] == [(pos, expected)]
    assert decoded.rejected[0].raw  # kept for the dead-letter store


def test_nan_in_a_batch_of_500_keeps_the_other_499() -> None:
    items = [["s1", NOW_MS - i, float(i), 0] for i in range(500)]
    items[250][2] = float("nan")
    decoded = decode(batch_json(items))
    assert len(decoded.batch.readings) == 499
    assert [(r.index, r.reason) for r in decoded.rejected] == [(250, Reason.NON_FINITE)]
    assert b"NaN" in decoded.rejected[0].raw


@given(ids)
def test_bad_envelope_ids_reject_the_whole_batch(gateway: str) -> None:
    with pytest.raises(ContractError) as info:
        decode(batch_json([], gateway=gateway + "/x"))
    assert info.value.reason is Reason.BAD_ID
    assert info.value.path == "$.gateway"


def test_gateway_must_match_its_topic() -> None:
    with pytest.raises(ContractError) as info:
        decode(batch_json([]), expect_gateway="gw-2")
    assert info.value.reason is Reason.TOPIC_MISMATCH
    decode(batch_json([]), expect_gateway="gw-1")


def test_size_limits() -> None:
    small = TelemetryDecoder(Limits(max_payload_bytes=200, max_readings=3))
    with pytest.raises(ContractError) as info:
        small.decode(b" " * 201, now_ms=NOW_MS)
    assert info.value.reason is Reason.TOO_LARGE
    items = [["s1", NOW_MS, 1.0, 0]] * 4
    with pytest.raises(ContractError) as info:
        small.decode(batch_json(items), now_ms=NOW_MS)
    assert info.value.reason is Reason.TOO_MANY_READINGS


@pytest.mark.parametrize("depth", [10, 1000, 100_000])
def test_deep_nesting_is_rejected_with_a_reason(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    for payload in (
        nested,
        nested.replace(b"[]", b"[NaN]"),
        b'{"a":' * depth + b"1" + b"}" * depth,
    ):
        with pytest.raises(ContractError) as info:
            decode(payload)
        assert info.value.reason in (Reason.MALFORMED, Reason.SCHEMA)
    # Inside the readings list, the nested item is one bad reading, judged on its own.
    for payload in (
        batch_json([]).replace(b"[]", nested),
        batch_json([]).replace(b"[]", nested.replace(b"[]", b"[NaN]")),
    ):
        try:
            decoded = decode(payload)
        except ContractError as exc:
            assert exc.reason is Reason.MALFORMED  # too deep even for the salvage parser
        else:
            assert decoded.batch.readings == []
            assert [r.reason for r in decoded.rejected] == [Reason.SCHEMA]


def test_nesting_inside_a_reading_rejects_that_reading_and_abuse_rejects_the_batch() -> None:
    def payload(depth: int) -> bytes:
        deep = "[" * depth + "]" * depth
        return batch_json([["s1", NOW_MS, 1.0, 0]]).replace(b"]]", f"], {deep}]".encode())

    decoded = decode(payload(50))
    assert len(decoded.batch.readings) == 1
    assert [r.reason for r in decoded.rejected] == [Reason.SCHEMA]
    with pytest.raises(ContractError) as info:
        decode(payload(5000))
    assert info.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(
    ("value", "quality"),
    [(float("nan"), Quality.GOOD), (float("inf"), Quality.GOOD), (None, Quality.GOOD)],
)
def test_make_reading_turns_missing_or_non_finite_into_bad_quality(
    value: float | None, quality: Quality
) -> None:
    reading = make_reading("s1", NOW_MS, value, quality)
    assert reading.value is None
    assert reading.quality is Quality.BAD
    assert (
        decode(encode(TelemetryBatch(gateway="g", boot="b", seq=0, readings=[reading]))).rejected
        == []
    )


def test_make_reading_keeps_comm_failure() -> None:
    assert make_reading("s1", NOW_MS, None, Quality.COMM_FAILURE).quality is Quality.COMM_FAILURE


@given(kind=st.sampled_from(list(MESSAGES)), payload=JSON_VALUES)
def test_every_decoder_rejects_arbitrary_json_with_a_reason(kind: type[Any], payload: Any) -> None:
    try:
        if kind is TelemetryBatch:
            decode(json.dumps(payload).encode())
        else:
            MessageDecoder(kind).decode(json.dumps(payload).encode())
    except ContractError as exc:
        assert exc.reason in (
            Reason.SCHEMA,
            Reason.BAD_ID,
            Reason.NON_FINITE,
            Reason.TIMESTAMP_OUT_OF_WINDOW,
        )
        if exc.reason is Reason.NON_FINITE and kind is not TelemetryBatch:
            assert "NaN" in json.dumps(payload) or "Infinity" in json.dumps(payload)
