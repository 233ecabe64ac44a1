"""Failures of the simulated plants and their protocol servers, as structured exceptions.

Each carries the fields a caller (a test, the CLI) needs to report or react, not just a
sentence; ``__reduce__`` keeps them picklable across processes (pytest-xdist, multiprocessing),
which custom ``__init__`` signatures otherwise break.
"""

from __future__ import annotations


class SimError(Exception):
    """Root of every simulator failure, so callers can catch them all at once."""


class PlantParameterError(SimError, ValueError):
    """A plant parameter outside its valid range; ``field`` names it."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"invalid plant parameter {field}={value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason

    def __reduce__(self) -> tuple[type[PlantParameterError], tuple[str, object, str]]:
        return (type(self), (self.field, self.value, self.reason))


class ModbusServerError(SimError):
    """The simulated Modbus server could not start (e.g. the port is taken) or was misused."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"modbus server {host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason

    def __reduce__(self) -> tuple[type[ModbusServerError], tuple[str, int, str]]:
        return (type(self), (self.host, self.port, self.reason))
