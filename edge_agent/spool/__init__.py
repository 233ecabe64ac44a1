"""The crash-safe SQLite spool: every reading is committed here before it is published and
deleted only when the cloud's end-to-end ``Ack`` covers its batch (see ``docs/edge-agent.md``).
"""

from edge_agent.spool.policy import DropLedger, DropReason, SpoolLimits
from edge_agent.spool.store import SpoolStore, StoredBatch, StreamInfo

__all__ = [
    "DropLedger",
    "DropReason",
    "SpoolLimits",
    "SpoolStore",
    "StoredBatch",
    "StreamInfo",
]
