"""API keys: random bearer tokens, stored only as their SHA-256, with a scope and sites.

A token is ``fd_`` + 32 random bytes (URL-safe base64), shown once when created. The store
keeps its SHA-256: a leaked database does not leak usable tokens, and verification looks the
hash up by index, so its timing says nothing about how much of a guess was right. Keys are
revoked, not deleted, so the list shows who had access; a revoked name may be created again.

Scopes are ordered, each allowing what the ones before it allow: ``read`` < ``ack``
(acknowledge, shelve, unshelve) < ``admin`` (replace the rules and the plan book). A key may
be restricted to sites (none: every site); an ``admin`` key is for every site, since what it
replaces is service-wide.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud_service.api.errors import ApiKeyError, ApiKeyExistsError, UnknownApiKeyError
from cloud_service.metadata.guard import guard
from cloud_service.metadata.schema import api_keys
from shared.ids import InvalidIdError, check_id

log = logging.getLogger(__name__)

TOKEN_PREFIX: Final = "fd_"  # noqa: S105 (a prefix, not a secret)
TOKEN_BYTES: Final = 32
_TOKEN_LENGTH: Final = len(TOKEN_PREFIX) + 43  # 32 bytes in unpadded base64
#: ``last_used_ms`` is written at most this often per key: not one UPDATE per request.
TOUCH_EVERY_MS: Final = 60_000


class Scope(StrEnum):
    """What a key may do; each scope allows everything the ones before it allow."""

    READ = "read"
    ACK = "ack"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Scope) -> bool:
        return self.rank >= needed.rank


_RANK: Final = {Scope.READ: 0, Scope.ACK: 1, Scope.ADMIN: 2}


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    scope: Scope
    created_ms: int
    revoked_ms: int | None = None
    last_used_ms: int | None = None
    #: The sites the key may see and act on; empty: every site.
    sites: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return self.revoked_ms is None


def new_token() -> str:
    raw = base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=")
    return TOKEN_PREFIX + raw.decode("ascii")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SqlApiKeyStore:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], int] = _wall_ms) -> None:
        self.engine = engine
        self.clock = clock
        self._backend = engine.dialect.name

    async def create(
        self, name: str, scope: Scope | str = Scope.READ, sites: Iterable[str] = ()
    ) -> tuple[ApiKey, str]:
        """A new key and its token (the only time the token is seen); ``sites`` restricts it
        to those sites (none: every site)."""
        try:
            check_id(name, "API key name")
            allowed = frozenset(check_id(s, "site") for s in sites)
        except InvalidIdError as exc:
            raise ApiKeyError(str(exc), name=name) from None
        try:
            chosen = Scope(scope)
        except ValueError:
            choices = ", ".join(s.value for s in Scope)
            raise ApiKeyError(f"unknown scope {scope!r} (one of {choices})", name=name) from None
        if chosen == Scope.ADMIN and allowed:
            raise ApiKeyError(
                "an admin key is for every site: the rules and the plan book it replaces are "
                "service-wide (use the ack scope for a site's operators)",
                name=name,
            )
        key = ApiKey(name, chosen, self.clock(), sites=allowed)
        token = new_token()
        row = {"name": key.name, "scope": key.scope.value, "token_hash": token_hash(token),
               "created_ms": key.created_ms, "sites": json.dumps(sorted(allowed))}  # fmt: skip
        c = api_keys.c
        with guard("api key create", self._backend):
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        delete(api_keys).where(c.name == name, c.revoked_ms.is_not(None))
                    )
                    await conn.execute(insert(api_keys).values(**row))
            except IntegrityError:
                raise ApiKeyExistsError(f"an API key named {name!r} exists", name=name) from None
        return key, token

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, by name."""
        with guard("api key list", self._backend):
            async with self.engine.connect() as conn:
                rows = await conn.execute(select(api_keys).order_by(api_keys.c.name))
                return [_key(r._mapping) for r in rows]

    async def revoke(self, name: str) -> ApiKey:
        """Revoke (idempotent: revoking a revoked key keeps its first revocation time)."""
        c = api_keys.c
        with guard("api key revoke", self._backend):
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(api_keys)
                    .where(c.name == name, c.revoked_ms.is_(None))
                    .values(revoked_ms=self.clock())
                )
                row = (await conn.execute(select(api_keys).where(c.name == name))).first()
        if row is None:
            raise UnknownApiKeyError(f"no API key named {name!r}", name=name)
        return _key(row._mapping)

    async def verify(self, token: str) -> ApiKey | None:
        """The active key of this token, or None; notes when it was last used."""
        if not token.startswith(TOKEN_PREFIX) or len(token) != _TOKEN_LENGTH:
            return None
        digest = token_hash(token)
        c = api_keys.c
        with guard("api key verify", self._backend):
            async with self.engine.connect() as conn:
                row = (await conn.execute(select(api_keys).where(c.token_hash == digest))).first()
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                return None
            key = _key(row._mapping)
            if not key.active:
                return None
            now = self.clock()
            if key.last_used_ms is None or now - key.last_used_ms >= TOUCH_EVERY_MS:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        update(api_keys).where(c.name == key.name).values(last_used_ms=now)
                    )
        return key


def _key(r: Any) -> ApiKey:
    """A stored key; a record that does not parse (edited by hand) is revoked as of now: it
    never means more access (an unreadable ``sites`` is not "every site")."""
    try:
        scope = Scope(r["scope"])
        sites = json.loads(r["sites"])
        if not isinstance(sites, list) or not all(isinstance(x, str) for x in sites):
            raise ValueError(f"sites must be a JSON list of site ids, not {r['sites']!r}")
        for site in sites:
            check_id(site, "site")
    except (ValueError, InvalidIdError, TypeError) as exc:
        log.error("API key %r has an unreadable record (%s): refused", r["name"], exc)
        return ApiKey(
            name=r["name"], scope=Scope.READ, created_ms=r["created_ms"],
            revoked_ms=r["revoked_ms"] or r["created_ms"], last_used_ms=r["last_used_ms"],
            sites=frozenset({"-"}),
        )  # fmt: skip
    return ApiKey(
        name=r["name"], scope=scope, created_ms=r["created_ms"],
        revoked_ms=r["revoked_ms"], last_used_ms=r["last_used_ms"], sites=frozenset(sites),
    )  # fmt: skip
