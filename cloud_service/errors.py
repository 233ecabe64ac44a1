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
