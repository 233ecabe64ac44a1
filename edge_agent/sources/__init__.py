"""Sources the agent polls, behind the one :class:`~edge_agent.sources.base.Source` interface.

:func:`build_source` maps a source's configuration to its implementation. Implementations are
imported only when configured, so a gateway without (say) OPC UA never imports its library.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.config import SignalConfig, SourceConfig
from edge_agent.sources.base import Source, failed_readings

__all__ = ["Source", "build_source", "failed_readings"]


def build_source(config: SourceConfig, signals: Sequence[SignalConfig]) -> Source:
    """The source for ``config`` reading ``signals`` (which must all name this source).

    ``SourceConfig`` has one member so far; when it becomes a union, this dispatches on
    ``config.type`` and mypy flags every member without a branch.
    """
    from edge_agent.sources.modbus import ModbusSource  # noqa: PLC0415 - lazy on purpose

    return ModbusSource(config, signals)
