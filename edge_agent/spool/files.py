"""The spool's files: the lock that keeps a second agent off, and quarantine of a corrupt file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from edge_agent.errors import SpoolError, SpoolLockedError


def lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SpoolError(path, f"cannot create the lock file {lock_path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SpoolLockedError(path, f"locked by another process ({lock_path})") from None
    return fd


def unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def quarantine(path: Path, now_ms: int | None = None) -> Path:
    """Move a corrupt spool (and its -wal/-shm) aside, keeping it for recovery."""
    seconds = (now_ms if now_ms is not None else time.time_ns() // 1_000_000) / 1000
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, target.with_name(target.name + suffix))
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target
