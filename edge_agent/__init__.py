"""Flightdeck edge agent: reads plant-floor sources on a gateway and publishes them over MQTT.

Runs on Raspberry Pi-class gateways, so importing this package stays light: no numba, no web
framework, and protocol libraries are imported only by the modules that use them.

Layout: pure cores (:mod:`~edge_agent.batcher`, :mod:`~edge_agent.processing`,
:mod:`~edge_agent.delivery`, :mod:`~edge_agent.spool.policy`, the poll schedule in
:mod:`~edge_agent.polling`, register decoding in :mod:`~edge_agent.sources.modbus`) and thin
shells around them (the SQLite spool in :mod:`~edge_agent.spool.store`, paho in
:mod:`~edge_agent.publisher`, the protocol clients in :mod:`~edge_agent.sources`, the event loop
in :mod:`~edge_agent.agent` and :mod:`~edge_agent.runner`, the status page, the CLI). Settings
are loaded once by :func:`edge_agent.config.load_config` and passed in; nothing else reads the
environment. ``docs/edge-agent.md`` is the reference.
"""

from edge_agent.version import agent_version as _agent_version

__version__ = _agent_version()
