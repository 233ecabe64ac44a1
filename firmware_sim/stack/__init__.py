"""Real Mosquitto and InfluxDB 1.6 servers as child processes, for tests and the demo.

Mocks of a broker or a time-series database hide exactly the behaviour that
breaks in production (queue limits, ACLs, TLS, crash recovery), so tests and
the demo run the real binaries on free loopback ports inside a scratch folder.
"""

from ._process import ManagedServer, find_binary
from .errors import BinaryNotFoundError, ServiceStartError, ServiceStopError, StackError
from .influxd import InfluxServer
from .local import LocalStack
from .mosquitto import MosquittoOptions, MosquittoServer, mqtt_connack_code, password_hash
from .ports import LOCALHOST, free_port, free_ports, port_is_open
from .tls import TlsMaterial, generate_tls_material, issue_client_cert

__all__ = [
    "LOCALHOST",
    "BinaryNotFoundError",
    "InfluxServer",
    "LocalStack",
    "ManagedServer",
    "MosquittoOptions",
    "MosquittoServer",
    "ServiceStartError",
    "ServiceStopError",
    "StackError",
    "TlsMaterial",
    "find_binary",
    "free_port",
    "free_ports",
    "generate_tls_material",
    "issue_client_cert",
    "mqtt_connack_code",
    "password_hash",
    "port_is_open",
]
