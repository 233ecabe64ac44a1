"""Flightdeck edge agent: reads plant-floor sources on a gateway and publishes them over MQTT.

Runs on Raspberry Pi-class gateways, so importing this package stays light: no numba, no web
framework, and protocol libraries are imported only by the modules that use them.

Layout: pure cores (:mod:`~edge_agent.batcher`, read planning and register decoding in
:mod:`~edge_agent.sources.modbus`, the poll schedule in :mod:`~edge_agent.agent`) and thin
shells around them (:mod:`~edge_agent.publisher` for paho-mqtt, the pymodbus client in
:class:`~edge_agent.sources.modbus.ModbusSource`, :mod:`~edge_agent.cli`). Settings are loaded
once by :func:`edge_agent.config.load_config` and passed in; nothing else reads the
environment.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("flightdeck")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"
