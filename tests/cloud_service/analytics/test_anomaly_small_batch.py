"""The serial small-batch kernel gives exactly what the parallel batch kernel gives."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_service.analytics.kernels import anomaly as ak
from cloud_service.analytics.kernels import anomaly_batch as kb


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_series=st.integers(1, 12),
    batches=st.integers(1, 8),
    size=st.integers(1, 300),
)
def test_small_and_parallel_kernels_agree(
    seed: int, n_series: int, batches: int, size: int
) -> None:
    rng = np.random.default_rng(seed)
    states = [ak.new_state(n_series) for _ in range(2)]
    params = ak.default_params(n_series)
    clock = np.zeros(n_series, dtype=np.int64)
    for _ in range(batches):
        ids = rng.integers(0, n_series, size).astype(np.int64)
        ts = clock[ids] + rng.integers(-2, 60_000, size)  # some out of order, some late
        for i, t in zip(ids, ts, strict=True):
            clock[i] = max(clock[i], t)
        x = rng.normal(10.0, 1.0, size)
        x[rng.random(size) < 0.05] += 30.0  # spikes
        x[rng.random(size) < 0.02] = np.nan
        (s1, p1), (s2, p2) = states
        a = kb.update_small(s1, p1, params, ids, ts, x)
        b = kb.update_batch(s2, p2, params, ids, ts, x)
        for got, want in zip(a, b, strict=True):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(states[0][0], states[1][0])
    np.testing.assert_array_equal(states[0][1], states[1][1])
