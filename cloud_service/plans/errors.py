"""Errors of the plan book: one class whose ``problems`` name the offending fields.

A planner fixing a file or an API client fixing a request body needs every bad field at
once, with a path such as ``demand[3].end_ms``, not the first exception only.
"""

from __future__ import annotations

from cloud_service.errors import CloudError


class PlanError(CloudError):
    """A plan that cannot be used; ``problems`` lists (field path, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"invalid plan in {source}:\n{lines}")

    @property
    def fields(self) -> list[str]:
        return [path for path, _ in self.problems]

    def within(self, prefix: str, source: str | None = None) -> PlanError:
        """The same problems with their paths under ``prefix`` (e.g. ``skus[2]``)."""
        return PlanError(
            source or self.source, [(f"{prefix}.{path}", msg) for path, msg in self.problems]
        )
