"""Hypothesis strategies for valid contract messages (shared by the shared/ tests)."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from shared.messages import (
    Ack,
    Alert,
    AlertAck,
    AlertState,
    Birth,
    Command,
    CommandName,
    GatewayState,
    Quality,
    Reading,
    Severity,
    SignalKind,
    SignalSpec,
    State,
    TelemetryBatch,
)

ID_FIRST = string.ascii_letters + string.digits
ID_REST = ID_FIRST + "_.:-"

ids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(ID_FIRST),
    st.text(alphabet=ID_REST, max_size=63),
)
# Printable text, no control characters, as the contract's Text type allows.
texts = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=80)
NOW_MS = 1_790_000_000_000
timestamps = st.integers(min_value=NOW_MS - 30 * 86_400_000, max_value=NOW_MS + 60_000)
finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    quality = draw(st.sampled_from(Quality))
    value = draw(finite) if quality == Quality.GOOD else draw(st.none() | finite)
    return Reading(draw(ids), draw(timestamps), value, quality)


batches = st.builds(
    TelemetryBatch,
    gateway=ids,
    boot=ids,
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    readings=st.lists(readings(), max_size=50),
    first_unacked=st.integers(min_value=0, max_value=2**63 - 1),
    historical=st.booleans(),
    clock_step_ms=st.integers(min_value=-(2**40), max_value=2**40),
)
signal_specs = st.builds(
    SignalSpec,
    id=ids,
    kind=st.sampled_from(SignalKind),
    unit=texts,
    sku=st.none() | ids,
    location=st.none() | ids,
    line=st.none() | ids,
    period_s=st.floats(min_value=0.001, max_value=86_400.0),
    description=texts,
)
births = st.builds(
    Birth,
    gateway=ids,
    site=ids,
    boot=ids,
    agent_version=texts,
    config_hash=texts,
    started_ms=timestamps,
    signals=st.lists(signal_specs, max_size=10),
    dropped=st.dictionaries(ids, st.integers(min_value=0, max_value=2**40), max_size=5),
)
states = st.builds(State, state=st.sampled_from(GatewayState), boot=ids, ts=timestamps)
acks = st.builds(
    Ack, gateway=ids, boot=ids, seq=st.integers(min_value=0, max_value=2**63 - 1), ts=timestamps
)
alerts = st.builds(
    Alert,
    id=ids,
    rule=ids,
    severity=st.sampled_from(Severity),
    state=st.sampled_from(AlertState),
    acked=st.booleans(),
    subject=ids,
    title=texts,
    message=texts,
    action=texts,
    figures=st.dictionaries(ids, finite, max_size=5),
    raised=timestamps,
    updated=timestamps,
)
alert_acks = st.builds(
    AlertAck, alert=ids, gateway=ids, operator=texts, ts=timestamps, comment=texts
)
commands = st.builds(
    Command,
    id=ids,
    name=st.sampled_from(CommandName),
    ts=timestamps,
    args=st.dictionaries(ids, texts | finite | st.booleans(), max_size=5),
)

MESSAGES = {
    TelemetryBatch: batches,
    Birth: births,
    State: states,
    Ack: acks,
    Alert: alerts,
    AlertAck: alert_acks,
    Command: commands,
}

# Characters the id rule must refuse (wildcards, separators, quoting, whitespace, control).
FORBIDDEN = "+#/ \t\n\r\"',=\\$%*?{}()[]<>;|&@!`~^" + "".join(map(chr, range(0x20))) + "\x7f"
bad_ids = st.one_of(
    st.just(""),
    st.text(alphabet=ID_REST, min_size=65, max_size=80).map(lambda s: "a" + s),
    st.sampled_from("_.:-").map(lambda c: c + "abc"),
    st.builds(
        lambda a, c, b: a + c + b,
        st.text(alphabet=ID_REST, max_size=5).map(lambda s: "a" + s),
        st.sampled_from(FORBIDDEN) | st.characters(min_codepoint=0x80),
        st.text(alphabet=ID_REST, max_size=5),
    ),
)
