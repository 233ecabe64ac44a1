"""Translate database driver failures into the service's :mod:`~cloud_service.errors`.

Callers branch on ``retryable`` only: a lost connection or a locked SQLite file is worth
waiting for; anything else is a bug or a schema problem and must surface.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from cloud_service.errors import MetadataError, MetadataUnavailable


@contextlib.contextmanager
def guard(operation: str, backend: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError, OSError, TimeoutError) as exc:
        raise MetadataUnavailable(
            f"metadata {operation} failed: {exc}", operation=operation, backend=backend
        ) from exc
    except DBAPIError as exc:
        cls = MetadataUnavailable if exc.connection_invalidated else MetadataError
        raise cls(
            f"metadata {operation} failed: {exc}", operation=operation, backend=backend
        ) from exc
