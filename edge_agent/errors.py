"""Failures of the edge agent, as structured exceptions.

Every error carries the fields a caller needs to react or report (which file and field, which
topic and paho return code), not just a sentence. ``__reduce__`` keeps them picklable, which
custom ``__init__`` signatures otherwise break.

A source that cannot reach its device is *not* an error here: it returns readings of quality
``COMM_FAILURE`` (see :mod:`edge_agent.sources.base`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class EdgeError(Exception):
    """Root of every edge-agent failure, so callers can catch them all at once."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration: a field path (``sources[0].port``), or a file position.

    ``field`` is None for problems of the file as a whole (unreadable, TOML syntax);
    ``line``/``column`` (1-based) are set for TOML syntax errors.
    """

    field: str | None
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.field is not None:
            return f"{self.field}: {self.message}"
        if self.line is not None:
            where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
            return f"{where}: {self.message}"
        return self.message


class ConfigError(EdgeError):
    """A configuration that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, path: str | Path | None, issues: Sequence[ConfigIssue]) -> None:
        self.path = None if path is None else Path(path)
        self.issues = tuple(issues)
        where = f"{self.path}: " if self.path is not None else ""
        count = len(self.issues)
        summary = "; ".join(str(issue) for issue in self.issues)
        super().__init__(
            f"{where}invalid configuration ({count} problem{'s' if count != 1 else ''}): {summary}"
        )

    def __reduce__(
        self,
    ) -> tuple[type[ConfigError], tuple[Path | None, tuple[ConfigIssue, ...]]]:
        return (type(self), (self.path, self.issues))


class RegisterDecodeError(EdgeError, ValueError):
    """Registers that cannot be decoded as ``data_type`` (wrong count, or not 16-bit words)."""

    def __init__(self, data_type: str, registers: Sequence[int], reason: str) -> None:
        self.data_type = data_type
        self.registers = tuple(registers)
        self.reason = reason
        super().__init__(f"cannot decode {list(self.registers)} as {data_type}: {reason}")

    def __reduce__(self) -> tuple[type[RegisterDecodeError], tuple[str, tuple[int, ...], str]]:
        return (type(self), (self.data_type, self.registers, self.reason))


class PublishError(EdgeError):
    """paho refused a publish; ``rc`` is paho's ``MQTTErrorCode`` value, ``reason`` its text."""

    def __init__(self, topic: str, rc: int, reason: str) -> None:
        super().__init__(f"publish to {topic!r} failed: {reason} (rc={rc})")
        self.topic = topic
        self.rc = rc
        self.reason = reason

    def __reduce__(self) -> tuple[type[PublishError], tuple[str, int, str]]:
        return (type(self), (self.topic, self.rc, self.reason))


class QueueFullError(PublishError):
    """paho's outgoing queue is full (``MQTT_ERR_QUEUE_SIZE``): the message was NOT queued.

    Raised when ``max_queued_messages`` is reached or the 16-bit message-id space of unacked
    QoS 1 messages is exhausted; the caller still owns the payload.
    """


class SpoolError(EdgeError):
    """The spool cannot be used; ``path`` is its file, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"spool {self.path}: {reason}")

    def __reduce__(self) -> tuple[type[SpoolError], tuple[Path, str]]:
        return (type(self), (self.path, self.reason))


class SpoolCorruptError(SpoolError):
    """SQLite reports the spool file corrupt (or not a database): move it aside, start fresh."""


class SpoolLockedError(SpoolError):
    """Another process (a second agent?) holds the spool's lock file: refuse to share it."""
