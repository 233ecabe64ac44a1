"""Encoding and validation of contract messages.

JSON through msgspec: typed decoding validates ids, types and finiteness in C (see
``bench/bench_codec.py`` for the measured alternatives). The hot path decodes a whole telemetry
batch in one call and checks timestamps in one pass. Only when that fails does a slower salvage
path run, which decodes readings one by one so a single bad reading is rejected with its own
reason while its 499 neighbours are kept.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import msgspec

from shared.errors import ContractError, Reason
from shared.ids import Id, InvalidIdError, is_valid_id
from shared.messages import Quality, Reading, Seq, TelemetryBatch

T = TypeVar("T")

_DAY_MS: Final = 86_400_000
#: The largest telemetry payload the cloud accepts by default (``Limits.max_payload_bytes``);
#: the edge batcher closes a batch before its encoding could pass it.
MAX_PAYLOAD_BYTES: Final = 1_048_576
#: The most readings one batch may carry by default (``Limits.max_readings``).
MAX_READINGS: Final = 10_000
_KNOWN_IDS_MAX: Final = 1_000_000  # bounds the cache of valid signal ids (about 100 MB worst case)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what the cloud accepts; defaults suit a gateway spooling for weeks."""

    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_readings: int = MAX_READINGS
    max_past_ms: int = 35 * _DAY_MS  # device time may lag receive time this much (spool replay)
    max_future_ms: int = 5 * 60_000  # ... and lead it this much (clock skew)


@dataclass(frozen=True, slots=True)
class RejectedReading:
    """One reading refused inside an otherwise accepted batch; ``raw`` is kept for dead letters."""

    index: int
    reason: Reason
    detail: str
    raw: bytes


@dataclass(slots=True)
class DecodedTelemetry:
    batch: TelemetryBatch
    rejected: list[RejectedReading] = field(default_factory=list)


class _Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """A batch whose readings stay raw, so each can be judged on its own."""

    gateway: Id
    boot: Id
    seq: Seq
    readings: list[msgspec.Raw]
    first_unacked: Seq = 1
    historical: bool = False
    clock_step_ms: int = 0


_ID_HINT: Final = "matching regex '^[A-Za-z0-9]"
_PATH_RE: Final = re.compile(r" - at `(?P<path>[^`]*)`$")
_FLOAT_BOUND_RE: Final = re.compile(r"Expected `float` [<>]=")
_INT_TS_BOUND: Final = "9223372036854"


#: What msgspec raises for bytes that are not JSON: its own error, or the codec's for bytes
#: that are not UTF-8 inside a string.
SYNTAX_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError)


def classify_validation_error(message: str) -> tuple[Reason, str, str | None]:
    """Map a msgspec validation message to (reason, detail, path)."""
    match = _PATH_RE.search(message)
    path = match.group("path") if match else None
    detail = message[: match.start()] if match else message
    if _ID_HINT in detail:
        reason = Reason.BAD_ID
    elif _FLOAT_BOUND_RE.search(detail) or detail.startswith("Number out of range"):
        reason = Reason.NON_FINITE
    elif _INT_TS_BOUND in detail:
        reason = Reason.TIMESTAMP_OUT_OF_WINDOW
    else:
        reason = Reason.SCHEMA
    return reason, detail, path


def _contract_error(exc: msgspec.ValidationError) -> ContractError:
    reason, detail, path = classify_validation_error(str(exc))
    return ContractError(reason, detail, path=path)


_encoder: Final = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """Encode any contract message (senders must build readings with :func:`make_reading`)."""
    return _encoder.encode(message)


def make_reading(signal: str, ts_ms: int, value: float | None, quality: Quality) -> Reading:
    """A reading that will pass validation: non-finite or missing values become BAD/null.

    JSON cannot carry NaN or Inf (msgspec writes ``null``), so the sender decides here, where
    the cause is known, rather than letting the cloud reject the reading.
    """
    if value is None or not math.isfinite(value):
        return Reading(signal, ts_ms, None, Quality.BAD if quality == Quality.GOOD else quality)
    return Reading(signal, ts_ms, value, quality)


class MessageDecoder(Generic[T]):
    """Decode and validate one message type, mapping every failure to a :class:`ContractError`."""

    def __init__(self, kind: type[T], limits: Limits | None = None) -> None:
        if kind is TelemetryBatch:
            raise TypeError("decode telemetry with TelemetryDecoder: it applies per-reading rules")
        self._decoder = msgspec.json.Decoder(kind)
        self.limits = limits or Limits()

    def decode(self, payload: bytes) -> T:
        _check_size(payload, self.limits)
        try:
            return self._decoder.decode(payload)
        except msgspec.ValidationError as exc:
            raise _contract_error(exc) from None
        except SYNTAX_ERRORS as exc:
            raise _malformed(payload, exc) from None
        except RecursionError:
            raise ContractError(Reason.MALFORMED, "nesting too deep") from None


def _malformed(payload: bytes, exc: Exception) -> ContractError:
    """MALFORMED, unless the only fault is a NaN/Infinity token some JSON writers emit."""
    if b"NaN" in payload or b"Infinity" in payload:
        try:
            json.loads(payload)
        except (ValueError, RecursionError):
            pass
        else:
            return ContractError(Reason.NON_FINITE, "NaN or Infinity where a number is required")
    return ContractError(Reason.MALFORMED, str(exc))


def _check_size(payload: bytes, limits: Limits) -> None:
    if len(payload) > limits.max_payload_bytes:
        raise ContractError(
            Reason.TOO_LARGE,
            f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload_bytes}",
        )


class TelemetryDecoder:
    """Decode telemetry batches, rejecting bad readings one by one and bad batches whole.

    Raises :class:`ContractError` when the batch as a whole is unusable (size, syntax, envelope,
    gateway mismatch, too many readings); returns the good readings plus a rejection per bad one
    otherwise.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._fast = msgspec.json.Decoder(TelemetryBatch)
        self._envelope = msgspec.json.Decoder(_Envelope)
        self._reading = msgspec.json.Decoder(Reading)
        # Signal ids already proven valid: a set lookup instead of a regex per reading.
        self._known_ids: set[str] = set()

    def decode(
        self, payload: bytes, *, now_ms: int, expect_gateway: str | None = None
    ) -> DecodedTelemetry:
        _check_size(payload, self.limits)
        try:
            batch = self._fast.decode(payload)
        except msgspec.ValidationError:
            return self._salvage(payload, now_ms, expect_gateway)
        except UnicodeDecodeError:  # bytes that are not UTF-8 inside a string: maybe one reading
            return self._salvage(payload, now_ms, expect_gateway)
        except msgspec.DecodeError as exc:
            return self._salvage_malformed(payload, exc, now_ms, expect_gateway)
        except RecursionError:
            raise ContractError(Reason.MALFORMED, "nesting too deep") from None
        self._check_envelope(batch.gateway, len(batch.readings), expect_gateway)
        lo = now_ms - self.limits.max_past_ms
        hi = now_ms + self.limits.max_future_ms
        good = Quality.GOOD
        known = self._known_ids
        for r in batch.readings:
            t = r.ts
            if t < lo or t > hi or (r.value is None and r.quality == good):
                return self._filter(batch, lo, hi)
            if r.signal not in known:
                if not is_valid_id(r.signal):
                    return self._filter(batch, lo, hi)
                self._remember(r.signal)
        return DecodedTelemetry(batch)

    def _remember(self, signal: str) -> None:
        if len(self._known_ids) >= _KNOWN_IDS_MAX:
            self._known_ids.clear()
        self._known_ids.add(signal)

    def _check_envelope(self, gateway: str, count: int, expect_gateway: str | None) -> None:
        if expect_gateway is not None and gateway != expect_gateway:
            raise ContractError(
                Reason.TOPIC_MISMATCH,
                f"batch from gateway {gateway!r} published on the topic of {expect_gateway!r}",
                path="$.gateway",
            )
        if count > self.limits.max_readings:
            raise ContractError(
                Reason.TOO_MANY_READINGS,
                f"{count} readings exceed the limit of {self.limits.max_readings}",
                path="$.readings",
            )

    def _filter(self, batch: TelemetryBatch, lo: int, hi: int) -> DecodedTelemetry:
        kept: list[Reading] = []
        rejected: list[RejectedReading] = []
        for i, r in enumerate(batch.readings):
            problem = _reading_problem(r, lo, hi)
            if problem is None:
                kept.append(r)
            else:
                rejected.append(RejectedReading(i, problem[0], problem[1], encode_reading(r)))
        return DecodedTelemetry(msgspec.structs.replace(batch, readings=kept), rejected)

    def _salvage(self, payload: bytes, now_ms: int, expect_gateway: str | None) -> DecodedTelemetry:
        try:
            env = self._envelope.decode(payload)
        except msgspec.ValidationError as exc:
            raise _contract_error(exc) from None
        except SYNTAX_ERRORS as exc:  # the typed pass stopped before the syntax error
            return self._salvage_malformed(payload, exc, now_ms, expect_gateway)
        except RecursionError:
            raise ContractError(Reason.MALFORMED, "nesting too deep") from None
        self._check_envelope(env.gateway, len(env.readings), expect_gateway)
        items = [bytes(raw) for raw in env.readings]
        return self._judge(env, items, self._decode_item, now_ms)

    def _salvage_malformed(
        self, payload: bytes, exc: Exception, now_ms: int, expect_gateway: str | None
    ) -> DecodedTelemetry:
        """Parse leniently what msgspec refuses but Python's json reads (the NaN/Infinity tokens
        some JSON writers emit, a lone surrogate escape), to reject just the readings at fault."""
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError):
            raise ContractError(Reason.MALFORMED, str(exc)) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("readings"), list):
            raise _malformed(payload, exc) from None
        items = doc["readings"]
        try:
            env = msgspec.convert({**doc, "readings": []}, _Envelope)
        except msgspec.ValidationError as err:
            raise _contract_error(err) from None
        self._check_envelope(env.gateway, len(items), expect_gateway)
        return self._judge(env, items, _convert_item, now_ms)

    def _judge(
        self,
        env: _Envelope,
        items: list[Any],
        decode_item: Any,
        now_ms: int,
    ) -> DecodedTelemetry:
        lo = now_ms - self.limits.max_past_ms
        hi = now_ms + self.limits.max_future_ms
        kept: list[Reading] = []
        rejected: list[RejectedReading] = []
        for i, item in enumerate(items):
            try:
                reading: Reading = decode_item(item)
            except msgspec.ValidationError as exc:
                reason, detail, _ = classify_validation_error(str(exc))
                rejected.append(RejectedReading(i, reason, detail, _raw_of(item)))
                continue
            except SYNTAX_ERRORS as exc:  # bytes that are not UTF-8 inside a string
                rejected.append(RejectedReading(i, Reason.MALFORMED, str(exc), _raw_of(item)))
                continue
            problem = _reading_problem(reading, lo, hi)
            if problem is None:
                kept.append(reading)
            else:
                rejected.append(RejectedReading(i, problem[0], problem[1], _raw_of(item)))
        batch = TelemetryBatch(
            gateway=env.gateway,
            boot=env.boot,
            seq=env.seq,
            readings=kept,
            first_unacked=env.first_unacked,
            historical=env.historical,
            clock_step_ms=env.clock_step_ms,
        )
        return DecodedTelemetry(batch, rejected)

    def _decode_item(self, item: bytes) -> Reading:
        return self._reading.decode(item)


def _convert_item(item: object) -> Reading:
    return msgspec.convert(item, Reading)


def _raw_of(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    return json.dumps(item, allow_nan=True).encode()


def _reading_problem(r: Reading, lo: int, hi: int) -> tuple[Reason, str] | None:
    if not is_valid_id(r.signal):
        return Reason.BAD_ID, str(InvalidIdError("signal", r.signal))
    if r.value is None and r.quality == Quality.GOOD:
        return Reason.MISSING_VALUE, f"reading of {r.signal!r} has GOOD quality but no value"
    if r.ts < lo or r.ts > hi:
        return (
            Reason.TIMESTAMP_OUT_OF_WINDOW,
            f"device time {r.ts} ms outside the accepted window [{lo}, {hi}]",
        )
    return None


_reading_encoder: Final = msgspec.json.Encoder()


def encode_reading(reading: Reading) -> bytes:
    return _reading_encoder.encode(reading)


@dataclass(frozen=True, slots=True)
class BatchIdentity:
    """Which batch a payload is (gateway, boot, seq), read even when the batch is refused."""

    gateway: str
    boot: str
    seq: int
    first_unacked: int = 1


class _Identity(msgspec.Struct, frozen=True):
    gateway: Id
    boot: Id
    seq: Seq
    first_unacked: Any = 1  # judged in Python: a bad one must not hide the identity


_identity_decoder: Final = msgspec.json.Decoder(_Identity)
_SEQ_MAX: Final = 2**63 - 1


def batch_identity(payload: bytes) -> BatchIdentity | None:
    """The identity of a telemetry payload refused as a whole, if it names a valid one.

    Only ``gateway``, ``boot`` and ``seq`` must be valid (every other field is ignored, so an
    oversized batch, one with too many readings or a bad envelope field is still identified);
    an invalid ``first_unacked`` counts as 1 (nothing assumed acked). ``None`` when the payload
    is not a JSON object or any of the three is missing or invalid.
    """
    ident: _Identity | None
    try:
        ident = _identity_decoder.decode(payload)
    except msgspec.ValidationError:
        return None
    except SYNTAX_ERRORS:
        ident = _identity_from_lenient_json(payload)
    except RecursionError:
        return None
    if ident is None:
        return None
    first = ident.first_unacked
    if type(first) is not int or not 0 <= first <= _SEQ_MAX:
        first = 1
    return BatchIdentity(ident.gateway, ident.boot, ident.seq, first)


def _identity_from_lenient_json(payload: bytes) -> _Identity | None:
    """For what only Python's json reads (see ``_salvage_malformed``)."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    try:
        return msgspec.convert(doc, _Identity)
    except msgspec.ValidationError:
        return None


#: An upper bound on the encoded size of a telemetry batch without its readings, whatever
#: its ids, seqs and flags (valid ids are at most 64 ASCII characters).
ENVELOPE_MAX_BYTES: Final = len(
    encode(
        TelemetryBatch(
            gateway="x" * 64,
            boot="x" * 64,
            seq=_SEQ_MAX,
            readings=[],
            first_unacked=_SEQ_MAX,
            historical=False,
            clock_step_ms=-(2**63),
        )
    )
)


def reading_size(reading: Reading) -> int:
    """Bytes of ``reading`` in an encoded batch (plus a comma unless it is the first)."""
    return len(encode_reading(reading))
