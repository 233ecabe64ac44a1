"""Free TCP ports on the loopback interface.

Fixed ports are unusable here: a system Mosquitto already owns 1883, other
developers run their own stacks concurrently, and parallel test workers would
collide. The kernel hands out an unused ephemeral port when binding port 0.
There is an unavoidable window between closing the probe socket and the server
binding the port; the servers retry with fresh ports if they lose that race.
"""

from __future__ import annotations

import socket

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port that nothing on ``host`` is listening on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, host: str = LOCALHOST) -> list[int]:
    """Return ``count`` distinct free ports (all probes are held open together)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
