"""Errors of the cloud service outside storage (which has its own in ``storage.errors``)."""

from __future__ import annotations


class CloudError(Exception):
    """Base of the cloud service's errors."""


class ConfigError(CloudError):
    """A configuration that cannot be used; ``problems`` lists (field path, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class MetadataError(CloudError):
    """The metadata store failed an operation; ``retryable`` says whether to try again later.

    Ingest retries retryable failures with back-off and acks nothing meanwhile, exactly as it
    does while the time-series store is down.
    """

    retryable: bool = False

    def __init__(self, message: str, *, operation: str, backend: str) -> None:
        super().__init__(message)
        self.operation = operation
        self.backend = backend


class MetadataUnavailable(MetadataError):
    """Connection refused or lost, database locked, server shutting down: try again later."""

    retryable = True


class MigrationError(MetadataError):
    """The schema could not be brought to the current revision; the service cannot start."""
