"""Ground truth: what really happened, as JSON-lines records the analytics are scored against.

Record types (every one has ``type``; times are simulated ms since the epoch):

* ``run``: seed, scenario, start of the run (first record);
* ``fault``: an injected fault, ``kind``, ``target``, ``start_ms``, ``end_ms`` and parameters;
* ``stockout``: ``warehouse``, ``sku``, ``ts_ms`` = the event that took true stock to zero;
* ``stockout_end``: the receipt that ended it, with ``start_ms`` and the demand ``lost``;
* ``downtime``: an unplanned failure of a line (not injected, but true), ``start_ms``/``end_ms``;
* ``plan_deviation``: ``scope`` production (a line's day) or demand (a SKU's bucket) off the
  S&OP plan by more than the scenario's tolerance, with ``planned``, ``actual``, ``deviation``.

Records are emitted in simulated-time order as the world reaches them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Record = dict[str, Any]
Sink = Callable[[Record], None]


class Truth:
    """Collects records and passes each to the sinks (a file writer, a test)."""

    def __init__(self, *, keep: bool = True) -> None:
        self.records: list[Record] = []
        self._keep = keep
        self._sinks: list[Sink] = []

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def emit(self, record: Record) -> None:
        if self._keep:
            self.records.append(record)
        for sink in self._sinks:
            sink(record)

    def of_type(self, kind: str) -> list[Record]:
        return [r for r in self.records if r["type"] == kind]


class JsonLinesWriter:
    """A sink writing one JSON object per line, flushed per record (a crash keeps the file)."""

    def __init__(self, path: str | Path) -> None:
        self._file: IO[str] = Path(path).open("a", encoding="utf-8")  # noqa: SIM115

    def __call__(self, record: Record) -> None:
        self._file.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_truth(path: str | Path) -> list[Record]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
