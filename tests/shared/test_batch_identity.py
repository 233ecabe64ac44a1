"""``batch_identity``: which batch a refused telemetry payload is, whatever else is wrong
with it, and nothing when its gateway, boot or seq is not valid."""

from __future__ import annotations

import json

from contract_strategies import bad_ids, batches
from hypothesis import given
from hypothesis import strategies as st

from shared.codec import BatchIdentity, batch_identity, encode
from shared.ids import is_valid_id
from shared.messages import TelemetryBatch

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)

not_ids = junk.filter(lambda v: not is_valid_id(v))


@given(batches)
def test_a_valid_batch_is_identified(batch: TelemetryBatch) -> None:
    assert batch_identity(encode(batch)) == BatchIdentity(
        batch.gateway, batch.boot, batch.seq, batch.first_unacked
    )


@given(
    batches,
    st.dictionaries(
        st.sampled_from(["readings", "historical", "clock_step_ms", "extra"]), junk, max_size=4
    ),
)
def test_broken_other_fields_do_not_hide_the_identity(
    batch: TelemetryBatch, broken: dict[str, object]
) -> None:
    doc = {**json.loads(encode(batch)), **broken}
    assert batch_identity(json.dumps(doc).encode()) == BatchIdentity(
        batch.gateway, batch.boot, batch.seq, batch.first_unacked
    )


@given(batches, junk)
def test_a_bad_first_unacked_counts_as_one(batch: TelemetryBatch, bad: object) -> None:
    doc = {**json.loads(encode(batch)), "first_unacked": bad}
    expected = bad if type(bad) is int and 0 <= bad < 2**63 else 1
    ident = batch_identity(json.dumps(doc).encode())
    assert ident == BatchIdentity(batch.gateway, batch.boot, batch.seq, expected)


@given(batches)
def test_nan_tokens_elsewhere_do_not_hide_the_identity(batch: TelemetryBatch) -> None:
    doc = json.loads(encode(batch))
    payload = json.dumps({**doc, "readings": [["s", 1, float("nan"), 0]]}).encode()
    assert b"NaN" in payload
    assert batch_identity(payload) == BatchIdentity(
        batch.gateway, batch.boot, batch.seq, batch.first_unacked
    )


@given(
    batches,
    st.one_of(
        st.tuples(st.sampled_from(["gateway", "boot"]), st.one_of(bad_ids, not_ids)),
        st.tuples(
            st.just("seq"),
            st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63), st.text()),
        ),
        st.tuples(st.sampled_from(["gateway", "boot", "seq"]), st.just(None)),
    ),
)
def test_no_identity_without_a_valid_gateway_boot_and_seq(
    batch: TelemetryBatch, bad: tuple[str, object]
) -> None:
    doc = json.loads(encode(batch))
    key, value = bad
    if value is None:
        del doc[key]
    else:
        doc[key] = value
    assert batch_identity(json.dumps(doc).encode()) is None


@given(st.binary(max_size=64) | st.sampled_from([b"[]", b"null", b"{" * 5000, b"[" * 100_000]))
def test_garbage_is_no_identity_and_never_raises(payload: bytes) -> None:
    assert batch_identity(payload) is None
