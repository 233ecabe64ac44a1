"""Dead letters: every rejected message or reading, kept with its reason and raw bytes.

One narrow interface (:class:`DeadLetterSink`); the first backend is an append-only JSON-lines
file, bounded by size (rotated once to ``.1``), counted per reason. The ingest issue moves it
into the metadata store behind the same interface.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared.errors import Reason


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: Reason
    detail: str
    topic: str
    gateway: str | None
    received_ms: int
    raw: bytes
    index: int | None = None  # position of the reading inside its batch, when one reading


class DeadLetterSink(Protocol):
    counts: Counter[str]

    def put(self, letter: DeadLetter) -> None: ...

    def flush(self) -> None:
        """Make every letter put so far durable (called before the MQTT ack)."""


class JsonlDeadLetters:
    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.counts: Counter[str] = Counter()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    def put(self, letter: DeadLetter) -> None:
        record = {
            "reason": letter.reason.value,
            "detail": letter.detail,
            "topic": letter.topic,
            "gateway": letter.gateway,
            "received_ms": letter.received_ms,
            "index": letter.index,
            "raw_b64": base64.b64encode(letter.raw).decode("ascii"),
        }
        self._file.write(json.dumps(record).encode() + b"\n")
        self.counts[letter.reason.value] += 1
        if self._file.tell() >= self.max_bytes:
            self._rotate()

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def _rotate(self) -> None:
        self.flush()
        self._file.close()
        self.path.replace(self.path.with_suffix(self.path.suffix + ".1"))
        self._file = self.path.open("ab")

    def close(self) -> None:
        self.flush()
        self._file.close()


def read_dead_letters(path: Path) -> list[dict[str, object]]:
    """Read a dead-letter file back (tests and tooling); raw bytes decoded from base64."""
    out: list[dict[str, object]] = []
    if not path.exists():
        return out
    for line in path.read_bytes().splitlines():
        record = json.loads(line)
        record["raw"] = base64.b64decode(record.pop("raw_b64"))
        out.append(record)
    return out
