"""Lifecycle shared by the stack's servers: spawn, readiness, stop, crash, restart.

Every server runs in its own session (process group) so a signal reaches it and
nothing else, its output goes straight to a log file (a PIPE nobody reads
eventually blocks the child), and every live child is tracked so an ``atexit``
hook can kill what a crashed or interrupted test run left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

from .errors import BinaryNotFoundError, ServiceStartError, ServiceStopError

_LOG_TAIL_BYTES = 6000
_LOG_TAIL_LINES = 40
_POLL_INTERVAL = 0.02
_PORT_RETRIES = 3

_live_lock = threading.Lock()
_live: set[subprocess.Popen[bytes]] = set()


def _kill_leftovers() -> None:
    """atexit: SIGKILL every child still tracked (a test run must not leak servers)."""
    with _live_lock:
        leftovers = list(_live)
        _live.clear()
    for proc in leftovers:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


atexit.register(_kill_leftovers)


def find_binary(service: str, name: str, env_var: str, fallbacks: tuple[str, ...]) -> Path:
    """Locate an executable: ``$env_var``, then ``PATH``, then well-known paths.

    The fallbacks matter because ``/usr/sbin`` (Mosquitto's Debian location) is
    not on a non-root user's ``PATH``.
    """
    override = os.environ.get(env_var)
    if override:
        candidates = [override]  # an explicit choice must not silently fall back
    else:
        found = shutil.which(name)
        candidates = [found] if found else []
        candidates.extend(fallbacks)
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return path
    looked = ", ".join(candidates) if candidates else f"PATH ({name})"
    raise BinaryNotFoundError(
        service,
        name,
        f"looked at {looked}; install it with `bash scripts/test` or "
        f"`apt-get install -y mosquitto influxdb`, or point ${env_var} at the executable",
    )


class _NotReadyError(Exception):
    """Internal: the probe failed this time; keep polling until the deadline."""


class ManagedServer(ABC):
    """One server child process living in ``workdir`` (config, data, log)."""

    service: str = "server"
    host: str = "127.0.0.1"

    def __init__(self, workdir: Path, binary: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.log_path = self.workdir / f"{self.service}.log"
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        # Ports may be re-picked only until the first successful start: after
        # that, clients hold the address and restart() must keep it.
        self._ports_committed = False

    # -- hooks for the concrete servers ---------------------------------

    @abstractmethod
    def _pick_ports(self) -> None:
        """Choose fresh free ports (called again if one was stolen meanwhile)."""

    @abstractmethod
    def _write_config(self) -> None:
        """Write the config file(s) for the current ports."""

    @abstractmethod
    def _command(self) -> list[str]:
        """argv of the server."""

    @abstractmethod
    def _probe(self, timeout: float) -> None:
        """Return when the server serves requests; raise ``_NotReadyError`` otherwise."""

    def _after_ready(self, deadline: float) -> None:
        """Post-start provisioning (e.g. the first admin user); default none."""
        return

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    # -- public lifecycle -----------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Spawn the server and return once it answers real protocol requests."""
        if self.is_running():
            return
        self._reap()
        began = time.monotonic()
        deadline = began + timeout
        for attempt in range(_PORT_RETRIES):
            self._write_config()
            self._spawn()
            try:
                self._await_ready(deadline)
            except ServiceStartError as exc:
                self.kill()
                lost_port_race = "address already in use" in exc.log_tail.lower()
                if lost_port_race and not self._ports_committed and attempt + 1 < _PORT_RETRIES:
                    self._pick_ports()
                    continue
                raise
            break
        self._ports_committed = True
        try:
            self._after_ready(deadline)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (lets the server flush/persist), then SIGKILL after ``timeout``.

        Idempotent: stopping a stopped or crashed server only reaps it.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired as exc:
                    raise ServiceStopError(
                        self.service, f"pid {proc.pid} survived SIGKILL for {timeout}s"
                    ) from exc
        self._reap()

    def kill(self) -> None:
        """SIGKILL on purpose: simulates a crash or power cut (no flush, no save)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
            proc.wait(timeout=10)
        self._reap()

    def restart(self, timeout: float | None = None) -> None:
        """Stop (gracefully, if still running) and start on the same ports and data."""
        self.stop()
        if timeout is None:
            self.start()
        else:
            self.start(timeout)

    def log_tail(self, since_start: bool = True) -> str:
        """Last lines of the log, by default only those of the current run."""
        try:
            with self.log_path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                begin = self._log_offset if since_start else 0
                handle.seek(max(begin, size - _LOG_TAIL_BYTES))
                data = handle.read()
        except FileNotFoundError:
            return ""
        lines = data.decode("utf-8", errors="replace").splitlines()
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            log.write(f"=== flightdeck stack: {self._command()} at {stamp} ===\n".encode())
            log.flush()
            # The child inherits its own copy of the descriptor; ours closes here.
            proc = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with _live_lock:
            _live.add(proc)
        self._proc = proc

    def _await_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None
        # Short probes first, so a squatter on a stolen port (which accepts the
        # TCP connection but never answers) or a quick crash is noticed fast;
        # longer ones later, so a slow but healthy server still gets through.
        probe_timeout = 0.2
        while True:
            code = proc.poll()
            if code is not None:
                raise ServiceStartError(
                    self.service, f"exited with code {code}", self.log_tail(), self.log_path
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceStartError(
                    self.service,
                    f"not ready within the start timeout (pid {proc.pid})",
                    self.log_tail(),
                    self.log_path,
                )
            try:
                self._probe(min(probe_timeout, max(remaining, 0.05)))
            except _NotReadyError:
                probe_timeout = min(probe_timeout * 2, 2.0)
                time.sleep(_POLL_INTERVAL)
            else:
                return

    def _signal(self, signum: signal.Signals) -> None:
        proc = self._proc
        if proc is None:
            return
        # The child leads its own process group (start_new_session), so this
        # reaches it and anything it forked, and never the test runner.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is not None:
            with _live_lock:
                _live.discard(proc)
            self._proc = None
