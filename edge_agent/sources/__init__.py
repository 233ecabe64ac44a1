"""Sources the agent polls, behind the one :class:`~edge_agent.sources.base.Source` interface.

:func:`build_source` maps a source's configuration to its implementation. Implementations are
imported only when configured, so a gateway without (say) OPC UA never imports its library.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.config import (
    CsvSourceConfig,
    HttpSourceConfig,
    ModbusSourceConfig,
    OpcUaSourceConfig,
    SignalConfig,
    SourceConfig,
)
from edge_agent.sources.base import Source, failed_readings

__all__ = ["Source", "build_source", "failed_readings"]


def build_source(config: SourceConfig, signals: Sequence[SignalConfig]) -> Source:
    """The source for ``config`` reading ``signals`` (which must all name this source)."""
    # Lazy imports on purpose: a gateway loads only the protocol libraries it uses.
    if isinstance(config, ModbusSourceConfig):
        from edge_agent.sources.modbus import ModbusSource  # noqa: PLC0415

        return ModbusSource(config, signals)
    if isinstance(config, OpcUaSourceConfig):
        from edge_agent.sources.opcua import OpcUaSource  # noqa: PLC0415

        return OpcUaSource(config, signals)
    if isinstance(config, HttpSourceConfig):
        from edge_agent.sources.http import HttpSource  # noqa: PLC0415

        return HttpSource(config, signals)
    if isinstance(config, CsvSourceConfig):
        from edge_agent.sources.csv_replay import CsvSource  # noqa: PLC0415

        return CsvSource(config, signals)
    raise TypeError(f"unknown source config {type(config).__name__}")  # pragma: no cover
