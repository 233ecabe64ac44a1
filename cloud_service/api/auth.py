"""Who is calling: an API key from ``Authorization: Bearer fd_...`` or ``X-API-Key``.

The one place access is decided. No key or an unknown or revoked one → 401 (the same answer
for both); a key whose scope is below what the endpoint needs (``read`` < ``ack`` <
``admin``) → 403. A key restricted to sites sees and acts on those sites only: the alert
routes ask :meth:`Principal.sees` and answer 404 for another site's alert (as for one that
does not exist), and service-wide endpoints (status, rules) need a key for every site. With
``allow_unauthenticated_read``, read endpoints also serve callers without a key, for every
site (a key that is sent must still be valid). The principal's name becomes the actor of what
it does (``api:<key name>``), so the alert log says who acknowledged.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at runtime, and
# their dependencies are local to the factory below.

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cloud_service.api.keys import Scope, SqlApiKeyStore
from cloud_service.errors import MetadataError, MetadataUnavailable

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="an API key: fd_...")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key: fd_...")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flightdeck"'}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str | None  # None: anonymous reader (allow_unauthenticated_read)
    scope: Scope
    #: The sites this caller may see and act on; empty: every site.
    sites: frozenset[str] = frozenset()
    #: The token it authenticated with, to check again later (an open stream); never shown.
    token: str | None = field(default=None, repr=False, compare=False)

    @property
    def actor(self) -> str:
        return f"api:{self.name}" if self.name else "api:anonymous"

    @property
    def every_site(self) -> bool:
        return not self.sites

    def sees(self, site: str) -> bool:
        return not self.sites or site in self.sites


Guard = Callable[..., Awaitable[Principal]]


@dataclass(frozen=True, slots=True)
class Guards:
    """The dependencies of an app's endpoints, by what they need."""

    read: Guard  # any valid key (or anonymous when allowed); alert routes filter by site
    ack: Guard  # acknowledge, shelve, unshelve (an ``ack`` or ``admin`` key)
    admin: Guard  # replace the rules or the plan book (an ``admin`` key, every site)
    service: Guard  # read what concerns every site (status, rules): a key for every site
    still_valid: Callable[[Principal], Awaitable[bool]]  # the key is still active


def guards(keys: SqlApiKeyStore, *, anonymous_read: bool) -> Guards:
    """The access dependencies of an app."""

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
        return Principal(key.name, key.scope, key.sites, token)

    async def read(who: Annotated[Principal | None, Depends(identify)]) -> Principal:
        if who is not None:
            return who
        if anonymous_read:
            return Principal(None, Scope.READ)
        raise HTTPException(401, "an API key is required", headers=_CHALLENGE)

    def needs(scope: Scope) -> Guard:
        async def check(who: Annotated[Principal | None, Depends(identify)]) -> Principal:
            if who is None:
                raise HTTPException(401, "an API key is required", headers=_CHALLENGE)
            if not who.scope.allows(scope):
                raise HTTPException(403, f"API key {who.name!r} has scope {who.scope.value!r}; "
                                         f"this needs {scope.value!r}")  # fmt: skip
            return who

        return check

    ack = needs(Scope.ACK)
    admin_scope = needs(Scope.ADMIN)

    def every_site(who: Principal) -> Principal:
        if not who.every_site:
            raise HTTPException(403, f"API key {who.name!r} is restricted to sites; "
                                     "this concerns every site")  # fmt: skip
        return who

    async def admin(who: Annotated[Principal, Depends(admin_scope)]) -> Principal:
        return every_site(who)

    async def service(who: Annotated[Principal, Depends(read)]) -> Principal:
        return every_site(who)

    async def still_valid(who: Principal) -> bool:
        if who.token is None:
            return True
        try:
            return await keys.verify(who.token) is not None
        except MetadataUnavailable as exc:
            # The store cannot say: keep the stream (it is checked again at the next
            # heartbeat) rather than cut every dashboard off while the database is down.
            log.warning("cannot check API key %r again (%s); checking later", who.name, exc)
            return True
        except MetadataError:
            log.exception("checking API key %r again failed; ending its stream", who.name)
            return False

    return Guards(read, ack, admin, service, still_valid)
