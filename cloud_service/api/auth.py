"""Who is calling: an API key from ``Authorization: Bearer fd_...`` or ``X-API-Key``.

No key or an unknown or revoked one → 401; a ``read`` key on a write endpoint → 403. With
``allow_unauthenticated_read``, read endpoints also serve callers without a key (a key that
is sent must still be valid). The principal's name becomes the actor of what it does
(``api:<key name>``), so the alert log says who acknowledged.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at runtime, and
# their dependencies are local to the factory below.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cloud_service.api.keys import Scope, SqlApiKeyStore

_bearer = HTTPBearer(auto_error=False, description="an API key: fd_...")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key: fd_...")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flightdeck"'}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str | None  # None: anonymous reader (allow_unauthenticated_read)
    scope: Scope

    @property
    def actor(self) -> str:
        return f"api:{self.name}" if self.name else "api:anonymous"


Guard = Callable[..., Awaitable[Principal]]


def guards(keys: SqlApiKeyStore, *, anonymous_read: bool) -> tuple[Guard, Guard]:
    """The ``(read, write)`` dependencies of an app."""

    async def identify(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header: Annotated[str | None, Depends(_header)],
    ) -> Principal | None:
        token = bearer.credentials if bearer is not None else header
        if not token:
            return None
        key = await keys.verify(token)
        if key is None:
            raise HTTPException(401, "invalid or revoked API key", headers=_CHALLENGE)
        return Principal(key.name, key.scope)

    async def read(who: Annotated[Principal | None, Depends(identify)]) -> Principal:
        if who is not None:
            return who
        if anonymous_read:
            return Principal(None, Scope.READ)
        raise HTTPException(401, "an API key is required", headers=_CHALLENGE)

    async def write(who: Annotated[Principal | None, Depends(identify)]) -> Principal:
        if who is None:
            raise HTTPException(401, "an API key is required", headers=_CHALLENGE)
        if not who.scope.allows(Scope.WRITE):
            raise HTTPException(403, f"API key {who.name!r} may only read")
        return who

    return read, write
