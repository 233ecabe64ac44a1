"""Failures of the local stack, with enough structure to diagnose a flaky CI run.

A bare ``RuntimeError("mosquitto failed")`` forces whoever reads a CI log to go
hunting for the broker's own log; carrying the service name, the reason and the
tail of that log in the exception puts the actual cause in the test report.
"""

from __future__ import annotations

from pathlib import Path


class StackError(Exception):
    """Root of every local-stack failure, so callers can catch them all at once."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason

    def __reduce__(self) -> tuple[type[StackError], tuple[str, str]]:
        # Custom __init__ signatures break default exception pickling (pytest-xdist).
        return (type(self), (self.service, self.reason))


class BinaryNotFoundError(StackError):
    """The server executable is not installed; the fix is an install, not a retry."""

    def __init__(self, service: str, binary: str, hint: str) -> None:
        StackError.__init__(self, service, f"executable {binary!r} not found; {hint}")
        self.binary = binary
        self.hint = hint

    def __reduce__(self) -> tuple[type[BinaryNotFoundError], tuple[str, str, str]]:  # type: ignore[override]
        return (type(self), (self.service, self.binary, self.hint))


class ServiceStartError(StackError):
    """The process died or never became ready; ``log_tail`` usually says why."""

    def __init__(
        self, service: str, reason: str, log_tail: str = "", log_path: Path | None = None
    ) -> None:
        StackError.__init__(self, service, reason)
        self.log_tail = log_tail
        self.log_path = log_path

    def __str__(self) -> str:
        text = f"{self.service} did not start: {self.reason}"
        if self.log_path is not None:
            text += f" (log: {self.log_path})"
        if self.log_tail:
            text += f"\n--- last lines of the {self.service} log ---\n{self.log_tail}"
        return text

    def __reduce__(  # type: ignore[override]
        self,
    ) -> tuple[type[ServiceStartError], tuple[str, str, str, Path | None]]:
        return (type(self), (self.service, self.reason, self.log_tail, self.log_path))


class ServiceStopError(StackError):
    """The process ignored even SIGKILL within the timeout (e.g. stuck in the kernel)."""
