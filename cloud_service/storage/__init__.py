"""Time-series storage behind one narrow interface (:class:`TimeSeriesStore`).

The rest of the cloud service imports from here only: the line-protocol encoder, the InfluxQL
builders, the store and its errors.
"""

from .base import Series, TimeSeriesStore, WriteOutcome, write_isolating
from .errors import (
    QueryError,
    RejectedLine,
    StorageError,
    StoreAuthError,
    StoreUnavailable,
    TargetNotFound,
    WriteRejected,
)
from .influx import InfluxSettings, InfluxStore, StoreStats
from .line_protocol import (
    LineProtocolError,
    Point,
    encode_lines,
    encode_point,
    encode_points,
    line,
    series_key,
)
from .retry import Backoff

__all__ = [
    "Backoff",
    "InfluxSettings",
    "InfluxStore",
    "LineProtocolError",
    "Point",
    "QueryError",
    "RejectedLine",
    "Series",
    "StorageError",
    "StoreAuthError",
    "StoreStats",
    "StoreUnavailable",
    "TargetNotFound",
    "TimeSeriesStore",
    "WriteOutcome",
    "WriteRejected",
    "encode_lines",
    "encode_point",
    "encode_points",
    "line",
    "series_key",
    "write_isolating",
]
