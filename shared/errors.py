"""Why a message or a reading was refused, as data the cloud can count and dead-letter."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Reason codes for rejections; stable strings, used as metric labels and dead-letter keys."""

    TOO_LARGE = "too_large"  # payload over the byte limit, refused before decoding
    MALFORMED = "malformed"  # not parseable in the encoding at all (bad JSON, too deep)
    SCHEMA = "schema"  # parseable, but wrong types, missing or unknown-valued fields
    BAD_ID = "bad_id"  # an identifier that breaks the shared id rule
    NON_FINITE = "non_finite"  # NaN or +-Inf where a number is required
    MISSING_VALUE = "missing_value"  # a reading of good quality without a value
    TIMESTAMP_OUT_OF_WINDOW = "ts_out_of_window"  # device time too far from receive time
    TOO_MANY_READINGS = "too_many_readings"  # more readings than one batch may carry
    TOPIC_MISMATCH = "topic_mismatch"  # payload names another gateway than its topic
    BAD_TOPIC = "bad_topic"  # a topic outside the contract's tree
    STORE_REJECTED = "store_rejected"  # valid by the contract, refused by the time-series store


class ContractError(Exception):
    """A message refused by the contract.

    ``path`` points into the payload (msgspec's ``$.readings[3][2]`` style) when known.
    """

    def __init__(self, reason: Reason, detail: str, *, path: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.path = path
        where = f" at {path}" if path else ""
        super().__init__(f"{reason.value}: {detail}{where}")
