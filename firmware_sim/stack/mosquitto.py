"""A private Mosquitto 2.0 broker per test (or per demo), on free loopback ports.

Written against 2.0.11's behaviour:

* ``max_queued_messages`` defaults to 1000 and *silently drops* QoS 1 messages
  for an offline persistent session beyond that, so it is always written out.
* 2.0 refuses anonymous clients unless ``allow_anonymous true`` is explicit, and
  an explicit ``listener`` disables the implicit one on 1883 (which the system
  broker owns anyway).
* Started as root, 2.0 drops privileges to the ``mosquitto`` user and can then
  no longer read the root-owned temporary folder, so ``user`` is set to
  whoever runs the tests (a no-op for non-root users).
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import os
import pwd
import secrets
import socket
import ssl
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._process import ManagedServer, _NotReadyError, find_binary
from .ports import free_ports
from .tls import TlsMaterial, generate_tls_material

_PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes ("$7$101$...")


@dataclass(frozen=True)
class MosquittoOptions:
    """Broker settings that tests and the demo vary; everything else is fixed."""

    users: Mapping[str, str] = field(default_factory=dict)
    acl: Sequence[str] = ()
    allow_anonymous: bool = True
    tls: bool = False
    require_certificate: bool = False
    max_queued_messages: int = 0
    max_inflight_messages: int = 100
    message_size_limit: int = 0
    persistence: bool = True
    extra: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.require_certificate and not self.tls:
            raise ValueError("require_certificate needs tls=True")
        for name, password in self.users.items():
            if not name or ":" in name or _has_newline(name) or _has_newline(password):
                raise ValueError(f"invalid Mosquitto username or password for {name!r}")
        for line in (*self.acl, *self.extra):
            if _has_newline(line):
                raise ValueError(f"config lines must not contain newlines: {line!r}")
        if min(self.max_queued_messages, self.max_inflight_messages, self.message_size_limit) < 0:
            raise ValueError("limits must be >= 0 (0 means unlimited/default)")


def _has_newline(text: str) -> bool:
    return "\n" in text or "\r" in text


def password_hash(password: str, salt: bytes | None = None) -> str:
    """Hash in mosquitto_passwd's ``$7$`` (PBKDF2-SHA512) format, without the tool."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    return (
        f"$7${_PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(digest).decode()}"
    )


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # uid without a passwd entry (some containers)
        return getpass.getuser()


def _connect_packet(client_id: str) -> bytes:
    """A minimal MQTT 3.1.1 CONNECT (clean session, no credentials)."""
    cid = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = struct.pack("!H", len(cid)) + cid
    body = variable + payload
    assert len(body) < 128  # single-byte remaining length
    return bytes([0x10, len(body)]) + body


def mqtt_connack_code(
    host: str,
    port: int,
    timeout: float = 1.0,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Send a raw CONNECT and return the CONNACK return code (0 = accepted).

    Any CONNACK, even "not authorised", proves the broker is past config
    loading and serving MQTT; a TCP accept alone does not. Raw bytes avoid
    spinning up a paho network thread just to probe, and close the socket on
    every failure path (paho leaks it when a TLS handshake fails). Transport
    and TLS failures raise ``OSError`` (``ssl.SSLError`` is one).
    """
    with contextlib.ExitStack() as stack:
        sock: socket.socket = stack.enter_context(
            socket.create_connection((host, port), timeout=timeout)
        )
        if ssl_context is not None:
            sock = stack.enter_context(ssl_context.wrap_socket(sock, server_hostname=host))
        sock.settimeout(timeout)
        sock.sendall(_connect_packet(f"fd-probe-{os.getpid()}-{secrets.token_hex(4)}"))
        reply = b""
        while len(reply) < 4:
            chunk = sock.recv(4 - len(reply))
            if not chunk:
                raise ConnectionError("broker closed the connection before CONNACK")
            reply += chunk
        if reply[0] != 0x20 or reply[1] != 0x02:
            raise ConnectionError(f"unexpected reply to CONNECT: {reply!r}")
        if reply[3] == 0:
            sock.sendall(b"\xe0\x00")  # DISCONNECT, so the broker logs a clean exit
        return reply[3]


class MosquittoServer(ManagedServer):
    """``mosquitto -c <workdir>/mosquitto.conf`` with persistence in ``workdir/data``."""

    service = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        options: MosquittoOptions | None = None,
        *,
        binary: Path | None = None,
    ) -> None:
        super().__init__(
            workdir,
            binary
            or find_binary(
                "mosquitto", "mosquitto", "FLIGHTDECK_MOSQUITTO", ("/usr/sbin/mosquitto",)
            ),
        )
        self.options = options if options is not None else MosquittoOptions()
        self.config_path = self.workdir / "mosquitto.conf"
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.tls: TlsMaterial | None = (
            generate_tls_material(self.workdir / "tls") if self.options.tls else None
        )
        self.port = 0
        self.tls_port: int | None = None
        self._pick_ports()

    @property
    def persistence_path(self) -> Path:
        return self.data_dir / "mosquitto.db"

    def client_cert(self, name: str) -> tuple[Path, Path]:
        """Issue a client cert (CN = ``name``) signed by this broker's CA."""
        if self.tls is None:
            raise RuntimeError("this broker was created without tls=True")
        return self.tls.client_cert(name)

    def _pick_ports(self) -> None:
        ports = free_ports(2 if self.options.tls else 1, self.host)
        self.port = ports[0]
        self.tls_port = ports[1] if self.options.tls else None

    def _command(self) -> list[str]:
        return [str(self.binary), "-c", str(self.config_path)]

    def _probe(self, timeout: float) -> None:
        try:
            mqtt_connack_code(self.host, self.port, timeout)
        except OSError as exc:  # refused, reset, timeout, early close
            raise _NotReadyError from exc
        # No separate TLS-port probe: Mosquitto binds every listener (and exits
        # on a bad cert) before serving anyone, and a bare TCP probe of the TLS
        # port only litters the log with "SSL unexpected eof" lines.

    def _write_config(self) -> None:
        opts = self.options
        lines = [
            "# Generated by firmware_sim.stack; rewritten on every start.",
            f"user {_current_user()}",
            "per_listener_settings false",
            "log_dest stderr",  # unbuffered: lines survive a SIGKILL
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages true",
            f"max_queued_messages {opts.max_queued_messages}",
            f"max_inflight_messages {opts.max_inflight_messages}",
        ]
        if opts.message_size_limit:
            lines.append(f"max_packet_size {opts.message_size_limit}")
        if opts.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.data_dir}/",
                "persistence_file mosquitto.db",
                "autosave_interval 1",
                "autosave_on_changes false",
            ]
        else:
            lines.append("persistence false")

        if opts.users:
            passwd = self.workdir / "passwd"
            _write_private(
                passwd,
                "".join(f"{name}:{password_hash(pw)}\n" for name, pw in opts.users.items()),
            )
            lines += [f"password_file {passwd}", "allow_anonymous false"]
        else:
            lines.append(f"allow_anonymous {'true' if opts.allow_anonymous else 'false'}")
        if opts.acl:
            acl = self.workdir / "acl"
            _write_private(acl, "".join(f"{line}\n" for line in opts.acl))
            lines.append(f"acl_file {acl}")

        lines += ["", f"listener {self.port} {self.host}", "protocol mqtt"]
        if self.tls is not None and self.tls_port is not None:
            lines += [
                "",
                f"listener {self.tls_port} {self.host}",
                "protocol mqtt",
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
            ]
            if opts.require_certificate:
                lines += ["require_certificate true", "use_identity_as_username true"]
        if opts.extra:
            lines += ["", "# extra", *opts.extra]
        self.config_path.write_text("\n".join(lines) + "\n")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
