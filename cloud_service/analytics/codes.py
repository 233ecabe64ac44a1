"""Integer codes the kernels emit, and their names for humans (CSV, JSON, alerts).

Kernels cannot return strings cheaply, so every categorical output is a small int; this module is
the one place that maps them to names. The values are part of the output contract: append only.
"""

from __future__ import annotations

from enum import IntEnum


class Reason(IntEnum):
    """Why a point was flagged (``NONE`` when it was not)."""

    NONE = 0
    LEVEL = 1  # far from the robust level (score high, both directions)
    SPIKE = 2  # an isolated outlier: one point far off, the next back to normal
    SHIFT = 3  # CUSUM: a sustained level shift
    FLATLINE = 4  # stuck: no change over many samples where the signal used to move
    NO_DATA = 5  # the time since the previous sample is far longer than the usual period
    COUNTER_RESET = 6  # a cumulative counter went down
    COUNTER_STALLED = 7  # a counter did not move while the plan says the line is running
    BURST = 8  # a run of unusual points, none alone far enough to be a spike


class DemandClass(IntEnum):
    """Syntetos-Boylan classes by ADI (cut-off 1.32) and CV² of demand sizes (cut-off 0.49)."""

    SMOOTH = 0
    ERRATIC = 1
    INTERMITTENT = 2
    LUMPY = 3
    NONE = 4  # no demand seen at all


class Model(IntEnum):
    """Forecasting models the kernels implement."""

    SES = 0
    HOLT = 1
    CROSTON = 2
    SBA = 3
    TSB = 4
    ADIDA = 5
    ZERO = 6
    IMAPA = 7  # intermittent: IMAPA blended with TSB (kernels/auto.py)


def reason_name(code: int) -> str:
    """Lower-case name of a reason code; ``unknown`` for a value this version does not know."""
    try:
        return Reason(code).name.lower()
    except ValueError:
        return "unknown"
