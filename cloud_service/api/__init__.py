"""The REST API (FastAPI): alerts, plans, status and the live alert stream, behind API keys."""

from cloud_service.api.app import ApiDeps, create_api
from cloud_service.api.errors import ApiKeyError, ApiKeyExistsError, UnknownApiKeyError
from cloud_service.api.keys import ApiKey, Scope, SqlApiKeyStore
from cloud_service.api.server import ApiServer
from cloud_service.api.settings import ApiSettings

__all__ = [
    "ApiDeps",
    "ApiKey",
    "ApiKeyError",
    "ApiKeyExistsError",
    "ApiServer",
    "ApiSettings",
    "Scope",
    "SqlApiKeyStore",
    "UnknownApiKeyError",
    "create_api",
]
