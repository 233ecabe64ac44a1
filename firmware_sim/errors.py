"""Failures of the simulated plants and their protocol servers, as structured exceptions.

Each carries the fields a caller (a test, the CLI) needs to report or react, not just a
sentence; ``__reduce__`` keeps them picklable across processes (pytest-xdist, multiprocessing),
which custom ``__init__`` signatures otherwise break.

The hierarchy is small on purpose::

    SimError
    ├── PlantParameterError   a model parameter out of range (also a ValueError)
    ├── ScenarioError         a scenario file that cannot be used: field path and line
    ├── UnknownEntityError    a line, order, signal... the scenario does not have (a KeyError)
    └── ServerError           a protocol server could not start or was misused
        ├── ModbusServerError
        ├── OpcUaServerError
        ├── MesServerError
        └── MqttDeviceError   (smart-sensor firmware mode and the fleet)
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


class ScenarioError(SimError, ValueError):
    """A scenario that cannot be used. ``field`` is a key path such as ``lines[1].shifts[0].start``
    and ``line`` the 1-based line of the TOML file where it is (when it could be found)."""

    def __init__(
        self, reason: str, *, field: str = "", line: int | None = None, source: str = ""
    ) -> None:
        where = source or "scenario"
        if line is not None:
            where += f":{line}"
        what = f"{field}: " if field else ""
        super().__init__(f"{where}: {what}{reason}")
        self.reason = reason
        self.field = field
        self.line = line
        self.source = source

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_scenario_error, (self.reason, self.field, self.line, self.source))


def _rebuild_scenario_error(
    reason: str, field: str, line: int | None, source: str
) -> ScenarioError:
    return ScenarioError(reason, field=field, line=line, source=source)


class UnknownEntityError(SimError, KeyError):
    """A lookup of something the running scenario does not have (``kind`` and ``name``)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"unknown {kind} {name!r}")
        self.kind = kind
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the whole message
        return f"unknown {self.kind} {self.name!r}"

    def __reduce__(self) -> tuple[type[UnknownEntityError], tuple[str, str]]:
        return (type(self), (self.kind, self.name))


class ServerError(SimError):
    """A protocol server could not start (e.g. its port is taken) or was misused."""

    protocol = "server"

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"{self.protocol} server {host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason

    def __reduce__(self) -> tuple[type[ServerError], tuple[str, int, str]]:
        return (type(self), (self.host, self.port, self.reason))


class ModbusServerError(ServerError):
    protocol = "modbus"


class OpcUaServerError(ServerError):
    protocol = "opcua"


class MesServerError(ServerError):
    protocol = "mes"


class MqttDeviceError(ServerError):
    protocol = "mqtt"
