"""Errors of the API's own stores (API keys); HTTP status codes are chosen in ``problems``."""

from __future__ import annotations

from cloud_service.errors import CloudError


class ApiKeyError(CloudError):
    """An API key operation that cannot be done; ``name`` is the key's name."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class ApiKeyExistsError(ApiKeyError):
    """An active key already has this name (revoke it first)."""


class UnknownApiKeyError(ApiKeyError):
    """No key has this name."""
