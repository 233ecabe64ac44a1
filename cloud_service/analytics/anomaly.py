"""Anomaly detection for one series, as the CLI and tests use it (the engine batches many).

Same kernel, same defaults as the live service. Offline there is no clock to notice silence,
so a row that follows a gap of more than ``NO_DATA_FACTOR`` sampling periods is flagged with
reason ``no_data`` (the live service raises the same reason from a timer while it is silent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud_service.analytics.codes import Reason
from cloud_service.analytics.csvio import gaps
from cloud_service.analytics.kernels import anomaly as ak

NO_DATA_FACTOR = 5.0
KINDS = {"gauge": ak.KIND_GAUGE, "counter": ak.KIND_COUNTER}


@dataclass(frozen=True, slots=True)
class Detection:
    score: npt.NDArray[np.float64]  # 0..1; 0.5 is the flag threshold (at the sensitivity used)
    flag: npt.NDArray[np.int8]  # 1 at the onset of an anomaly episode
    reason: npt.NDArray[np.int8]  # codes.Reason


def detect(
    ts_ms: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    *,
    sensitivity: float = 1.0,
    kind: str = "gauge",
    warmup: float = ak.DEFAULT_WARMUP,
    holdoff: float = ak.DEFAULT_HOLDOFF,
) -> Detection:
    """Score every point of one series (sorted by time; NaN values are passed over)."""
    if sensitivity <= 0:
        raise ValueError("sensitivity must be positive")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}")
    ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
    x = np.ascontiguousarray(values, dtype=np.float64)
    if ts.shape != x.shape or ts.ndim != 1:
        raise ValueError("timestamps and values must be 1-D and of equal length")
    state, profile = ak.new_state(1)
    params = ak.default_params(1)
    params[0, ak.P_THRESHOLD] = sensitivity
    params[0, ak.P_KIND] = KINDS[kind]
    params[0, ak.P_WARMUP] = warmup
    params[0, ak.P_HOLDOFF] = holdoff
    score, flag, reason = ak.detect_series(state, profile, params, 0, ts, x)
    flag[flag == ak.LATE] = 0  # unsorted input is refused upstream; never report "late" here
    period, after = gaps(ts, NO_DATA_FACTOR)
    for i in after:
        if flag[i] == 0 and i >= 1:
            sev = (ts[i] - ts[i - 1]) / (NO_DATA_FACTOR * period)
            score[i] = max(score[i], sev / (1.0 + sev))
            flag[i] = 1
            reason[i] = Reason.NO_DATA
    return Detection(score=score, flag=flag, reason=reason)
