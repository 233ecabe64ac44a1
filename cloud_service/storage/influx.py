"""InfluxDB over its HTTP API (``/write``, ``/query``, ``/ping``) with one pooled httpx client.

Speaks the 1.x API, which InfluxDB 2.x/3.x also serve for compatibility: user/password go as
HTTP basic auth (kept out of URLs and access logs), a token as ``Authorization: Token``.
Transient failures are retried here with :class:`~.retry.Backoff`; everything else becomes a
typed :mod:`~.errors` exception. Behaviour of influxd 1.6.7 this relies on:

* a 400 on ``/write`` can be a *partial* write: ``partial write: unable to parse '<line>':
  <why>[\\n...] dropped=0`` means every other line was stored; ``partial write: <why>
  dropped=N`` means N points were dropped, unnamed; a plain ``field type conflict`` (no
  ``partial``) means nothing was stored;
* a missing retention policy on ``/write`` is a **500** ("retention policy not found"), which
  must not be retried like an outage;
* unknown ``precision``/``epoch`` values are silently read as nanoseconds.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import httpx

from shared.ids import check_id

from . import influxql
from .base import Series, WriteOutcome, write_isolating
from .errors import (
    QueryError,
    StorageError,
    StoreAuthError,
    StoreUnavailable,
    TargetNotFound,
    WriteRejected,
)
from .line_protocol import PRECISIONS, LineProtocolError
from .retry import Backoff, parse_retry_after

log = logging.getLogger(__name__)

_GZIP_MIN_BYTES: Final = 1024
_GZIP_IN_THREAD_BYTES: Final = 256 * 1024  # zlib releases the GIL: big bodies off the loop
_MAX_GET_QUERY: Final = 4096
_READ_ONLY_RE: Final = re.compile(r"\s*(SELECT|SHOW)\b", re.IGNORECASE)
_MUTATING_RE: Final = re.compile(
    r"\b(INTO|CREATE|DROP|ALTER|DELETE|GRANT|REVOKE|KILL|SET)\b", re.IGNORECASE
)
_NEG_ZERO_RE: Final = re.compile(rb"[\[,:]-0[,\]}]")
_MISSING_TARGET: Final = ("database not found", "retention policy not found")


@dataclass(frozen=True, slots=True)
class InfluxSettings:
    """Where and how to reach one database. Secrets are left out of ``repr``."""

    url: str
    database: str
    retention_policy: str | None = None
    #: Only used when :meth:`InfluxStore.ensure_database` creates the retention policy.
    retention_duration: str = "INF"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    gzip: bool = True
    max_retries: int = 5
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 10.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        check_id(self.database, "database")
        if self.retention_policy is not None:
            check_id(self.retention_policy, "retention policy")
        influxql.duration_literal(self.retention_duration)
        parsed = httpx.URL(self.url)
        if parsed.scheme not in {"http", "https"} or not parsed.host:
            raise ValueError(f"url must be http(s)://host[:port], got {self.url!r}")
        if parsed.userinfo:
            raise ValueError("put credentials in username/password or token, not in the url")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.token is not None and self.username is not None:
            raise ValueError("use either username/password (1.x) or token (2.x/3.x), not both")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        _ = self.backoff  # validates the backoff numbers early

    @property
    def backoff(self) -> Backoff:
        return Backoff(
            self.backoff_base_s, self.backoff_cap_s, self.max_retries, self.max_retry_after_s
        )


@dataclass(slots=True)
class StoreStats:
    """Counters for metrics: HTTP requests (retries included) and body sizes."""

    requests: int = 0
    retries: int = 0
    bytes_raw: int = 0
    bytes_sent: int = 0


class InfluxStore:
    """:class:`~.base.TimeSeriesStore` on InfluxDB; safe to share between tasks."""

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.stats = StoreStats()
        self._backoff = settings.backoff
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 -- jitter only
        self._sleep = sleep
        headers = {"Accept": "application/json", "User-Agent": "flightdeck-storage"}
        auth: httpx.Auth | None = None
        if settings.token is not None:
            headers["Authorization"] = f"Token {settings.token}"
        elif settings.username is not None and settings.password is not None:
            auth = httpx.BasicAuth(settings.username, settings.password)
        self._client = httpx.AsyncClient(
            base_url=settings.url,
            headers=headers,
            auth=auth,
            timeout=settings.timeout_s,
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ping(self) -> bool:
        try:
            response = await self._client.get("/ping")
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    async def write(self, lines: bytes | Sequence[str], *, precision: str = "ms") -> None:
        if precision not in PRECISIONS:
            raise LineProtocolError(f"unknown precision {precision!r}")
        if isinstance(lines, str):
            raise TypeError("lines must be bytes or a sequence of str, not one str")
        if isinstance(lines, bytes):
            body = lines
        else:
            try:
                body = "\n".join(lines).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise LineProtocolError(f"lines are not valid Unicode: {exc}") from None
        if not body:
            return
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        payload = body
        if self.settings.gzip and len(body) >= _GZIP_MIN_BYTES:
            if len(body) >= _GZIP_IN_THREAD_BYTES:
                payload = await asyncio.to_thread(gzip.compress, body, 1, mtime=0)
            else:
                payload = gzip.compress(body, 1, mtime=0)
            headers["Content-Encoding"] = "gzip"
        self.stats.bytes_raw += len(body)
        self.stats.bytes_sent += len(payload)
        params = self._params(precision=PRECISIONS[precision])
        response = await self._send(
            "POST", "/write", "write", params=params, content=payload, headers=headers
        )
        status = response.status_code
        if status in {200, 204}:
            return
        if status in {400, 413}:
            raise WriteRejected.from_server(status, _server_message(response), lines)
        raise _error(response, "write")

    async def write_isolating(self, lines: Sequence[str], *, precision: str = "ms") -> WriteOutcome:
        """See :func:`~.base.write_isolating`."""
        return await write_isolating(self, lines, precision=precision)

    async def query(self, q: str, *, epoch: str = "ms") -> list[Series]:
        if epoch not in PRECISIONS:
            raise ValueError(f"unknown epoch {epoch!r}; use one of {sorted(PRECISIONS)}")
        return await self._run(q, self._params(epoch=PRECISIONS[epoch]))

    async def ensure_database(self) -> None:
        """``CREATE DATABASE`` (idempotent) and, if configured, the retention policy.

        An existing policy with other settings is kept, with a warning: shortening retention
        deletes data, which is an operator's decision, not a side effect of a restart.
        """
        s = self.settings
        await self._run(influxql.create_database(s.database), {})
        if s.retention_policy is None:
            return
        q = influxql.create_retention_policy(s.retention_policy, s.database, s.retention_duration)
        try:
            await self._run(q, {})
        except QueryError as exc:
            if "already exists" not in (exc.server_message or ""):
                raise
            log.warning(
                "retention policy %s on %s exists with other settings; kept as is (%s)",
                s.retention_policy,
                s.database,
                exc.server_message,
            )

    # -- internals ------------------------------------------------------------------------

    def _params(self, **extra: str) -> dict[str, str]:
        params = {"db": self.settings.database, **extra}
        if self.settings.retention_policy is not None:
            params["rp"] = self.settings.retention_policy
        return params

    async def _run(self, q: str, params: Mapping[str, str]) -> list[Series]:
        read_only = bool(_READ_ONLY_RE.match(q)) and not _MUTATING_RE.search(q)
        if read_only and len(q) <= _MAX_GET_QUERY:
            response = await self._send(
                "GET", "/query", "query", params={**params, "q": q}, retry_read_timeout=False
            )
        else:  # statements that change things must be POSTed; long reads may be
            response = await self._send(
                "POST",
                "/query",
                "query",
                params=params,
                data={"q": q},
                retry_read_timeout=not read_only,
            )
        if response.status_code != 200:
            raise _error(response, "query")
        return _parse_results(response.content)

    async def _send(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, str],
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_read_timeout: bool = True,
    ) -> httpx.Response:
        """One request with retries on outages; returns any non-retryable response."""
        attempt = 0
        while True:
            self.stats.requests += 1
            retry_after: float | None = None
            status: int | None = None
            try:
                response = await self._client.request(
                    method, path, params=params, content=content, data=data, headers=headers
                )
            except httpx.TransportError as exc:
                if _echoed_unreadable(exc):
                    raise _unreadable(operation, exc) from exc
                if isinstance(exc, httpx.ReadTimeout) and not retry_read_timeout:
                    raise StoreUnavailable(
                        f"{operation} timed out", operation=operation, attempts=attempt + 1
                    ) from exc
                failure = f"{type(exc).__name__}: {exc}"
                cause: BaseException | None = exc
            else:
                status = response.status_code
                if status != 429 and (status < 500 or _target_missing(response)):
                    return response
                failure = f"HTTP {status}: {_server_message(response)}"
                cause = None
                if status in {429, 503}:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if not self._backoff.should_retry(attempt):
                raise StoreUnavailable(
                    f"{operation} to {self.settings.url} failed after {attempt + 1} attempts: "
                    f"{failure}",
                    operation=operation,
                    status=status,
                    server_message=failure,
                    attempts=attempt + 1,
                ) from cause
            delay = self._backoff.delay(attempt, self._rng, retry_after)
            log.warning("%s failed (%s); retry %d in %.2fs", operation, failure, attempt + 1, delay)
            self.stats.retries += 1
            attempt += 1
            await self._sleep(delay)


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, str):
            return error
    header = response.headers.get("X-Influxdb-Error")
    return header if header else response.text.strip()[:500]


def _echoed_unreadable(exc: httpx.TransportError) -> bool:
    """influxd put our bytes (with control characters) in ``X-Influxdb-Error``: a data error."""
    return isinstance(exc, httpx.RemoteProtocolError) and "x-influxdb-error" in str(exc).lower()


def _unreadable(operation: str, exc: httpx.TransportError) -> StorageError:
    text = f"{operation} refused; the error header echoes control characters: {exc}"
    if operation == "write":
        return WriteRejected(text, status=None, server_message=str(exc))
    return QueryError(text, server_message=str(exc))


def _target_missing(response: httpx.Response) -> bool:
    return response.status_code in {404, 500} and _server_message(response).startswith(
        _MISSING_TARGET
    )


def _error(response: httpx.Response, operation: str) -> StorageError:
    status = response.status_code
    message = _server_message(response)
    text = f"{operation} refused with HTTP {status}: {message}"
    if status in {401, 403}:
        return StoreAuthError(text, operation=operation, status=status, server_message=message)
    if _target_missing(response):
        return TargetNotFound(text, operation=operation, status=status, server_message=message)
    if operation == "query" and status == 400:
        return QueryError(text, status=status, server_message=message)
    return StorageError(text, operation=operation, status=status, server_message=message)


def _neg_zero(text: str) -> float | int:
    # Go's JSON writes the float -0.0 as "-0"; Python would read it as the int 0.
    return -0.0 if text == "-0" else int(text)


def _loads(body: bytes) -> Any:
    if _NEG_ZERO_RE.search(body):
        return json.loads(body, parse_int=_neg_zero)
    return json.loads(body)


def _parse_results(body: bytes) -> list[Series]:
    try:
        data = _loads(body)
    except ValueError as exc:
        raise QueryError(f"query answer is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise QueryError("query answer is not a JSON object")
    if "error" in data:
        raise QueryError(f"query failed: {data['error']}", server_message=str(data["error"]))
    out: list[Series] = []
    for result in data.get("results", ()):
        statement_id = result.get("statement_id")
        if "error" in result:
            message = str(result["error"])
            text = f"statement {statement_id} failed: {message}"
            if message.startswith(_MISSING_TARGET):
                raise TargetNotFound(text, operation="query", server_message=message)
            raise QueryError(text, server_message=message, statement_id=statement_id)
        for note in result.get("messages", ()):
            log.warning("influxdb %s: %s", note.get("level"), note.get("text"))
        series_list = result.get("series", ())
        if result.get("partial") or any(s.get("partial") for s in series_list):
            raise QueryError(
                f"statement {statement_id} was truncated by the server (max-row-limit)",
                statement_id=statement_id,
            )
        out.extend(
            Series(
                name=s.get("name", ""),
                tags=s.get("tags") or {},
                columns=tuple(s.get("columns", ())),
                values=s.get("values") or [],
            )
            for s in series_list
        )
    return out
