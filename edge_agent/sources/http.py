"""HTTP/MES source: GET one JSON document per poll, one field per signal.

The GET goes through :mod:`edge_agent.sources.http_client` (standard library, asyncio), not
httpx: the gateway's memory budget has no room for httpx's 5 MB.

Each signal names a field (dotted path or JSON Pointer, see :mod:`edge_agent.sources.values`);
numbers pass through, booleans become 1/0, text (an order status) goes through the signal's
``value_map``. Failures never go silent:

* no answer (refused, timeout, TLS) or a 5xx: every signal COMM_FAILURE, and the next attempt
  waits out an exponential backoff (still reporting COMM_FAILURE meanwhile);
* a 4xx, a body that is not JSON, nested too deeply to parse, or too large: every signal BAD
  (the server answered, the answer is unusable), logged once until the source recovers;
* a field missing or not a number (or a number beyond a float, such as a 400-digit integer):
  that signal BAD, the others unaffected.

Redirects are not followed (an MES URL that moves is a configuration change, not a surprise).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from edge_agent.backoff import Backoff
from edge_agent.config import HttpSourceConfig, SignalConfig
from edge_agent.sources.base import check_signals, failed_readings
from edge_agent.sources.http_client import HttpGetClient, HttpTooLarge, HttpTransportError
from edge_agent.sources.values import FieldNotFoundError, reading_from, select
from shared.codec import make_reading
from shared.messages import Quality, Reading

log = logging.getLogger(__name__)


class _Unusable(Exception):
    """The server answered, but not with a usable document."""


class HttpSource:
    """Polls one JSON endpoint for a set of signals; see the module docstring."""

    def __init__(
        self,
        config: HttpSourceConfig,
        signals: Sequence[SignalConfig],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_signals(config.id, signals, needs="field", what="field selector")
        self.config = config
        self.signals = tuple(signals)
        self.signal_ids = tuple(s.id for s in signals)
        self.last_error: str | None = None
        self._monotonic = monotonic
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._client: HttpGetClient | None = None
        self._up: bool | None = None

    @property
    def id(self) -> str:
        return self.config.id

    async def read(self, now_ms: int) -> list[Reading]:
        if not self._backoff.ready(self._monotonic()):
            return failed_readings(self.signal_ids, now_ms, Quality.COMM_FAILURE)
        try:
            doc = await self._fetch()
        except HttpTransportError as exc:
            self._failed(str(exc))
            return failed_readings(self.signal_ids, now_ms, Quality.COMM_FAILURE)
        except _Unusable as exc:
            self._failed(str(exc), backoff=False)
            return failed_readings(self.signal_ids, now_ms, Quality.BAD)
        self._backoff.succeeded()
        if self._up is not True:
            log.info("http source %s: reading %s", self.id, self.config.url)
        self._up = True
        return [self._reading(s, doc, now_ms) for s in self.signals]

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _reading(self, s: SignalConfig, doc: Any, now_ms: int) -> Reading:
        assert s.field is not None
        try:
            value = select(doc, s.field)
        except FieldNotFoundError as exc:
            self.last_error = str(exc)
            return make_reading(s.id, now_ms, None, Quality.BAD)
        return reading_from(
            s.id, now_ms, value, scale=s.scale, offset=s.offset, value_map=s.value_map
        )

    async def _fetch(self) -> Any:
        if self._client is None:
            headers = dict(self.config.headers)
            if self.config.bearer_token is not None:
                headers["Authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
            try:
                self._client = HttpGetClient(
                    self.config.url,
                    headers=headers,
                    timeout_s=self.config.timeout_s,
                    verify_tls=self.config.verify_tls,
                    max_bytes=self.config.max_bytes,
                )
            except ValueError as exc:  # config validation refuses these; built by hand?
                raise _Unusable(f"cannot request {self.config.url}: {exc}") from None
        try:
            response = await self._client.get()
        except HttpTooLarge as exc:
            raise _Unusable(str(exc)) from None
        if response.status >= 500:
            raise HttpTransportError(f"server error {response.status}")
        if response.status != 200:
            raise _Unusable(f"HTTP {response.status} from {self.config.url}")
        try:
            return json.loads(response.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Unusable(f"not JSON: {exc}") from None
        except RecursionError:
            raise _Unusable("not JSON this source can read: nested too deeply") from None

    def _failed(self, error: str, *, backoff: bool = True) -> None:
        self.last_error = error
        if backoff:
            self._backoff.failed(self._monotonic())
        if self._up is not False:
            log.warning("http source %s: %s", self.id, error)
        self._up = False
