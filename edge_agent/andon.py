"""The andon light: a Modbus coil ON while a (critical) alert is active at the plant.

Active means not cleared and not shelved: a cleared alert still awaiting its acknowledgement,
or one an operator shelved in the cloud (until its ``shelved_until``), does not light it.

A pure core decides (:func:`light_wanted`, :class:`CoilState`: what the coil should be, and
whether it is time to write it); :class:`AndonDriver` is the thin pymodbus shell, one task on
the agent's event loop. A write that fails (device down, exception response, timeout) is
retried every ``retry_s``; a successful one is repeated every ``refresh_s`` so a PLC that
restarted with its coils cleared gets the light back. A graceful stop leaves the coil as it is:
the alerts are still active when the agent stops, and a light that goes out would say they
are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from edge_agent.alerts import shelved
from edge_agent.status import AndonStatus
from shared.messages import Alert, AlertState, Severity

if TYPE_CHECKING:
    from pymodbus.client import AsyncModbusTcpClient

    from edge_agent.config import AgentConfig, AndonConfig

log = logging.getLogger(__name__)

#: How often the driver looks at the alerts (they change on the same event loop).
CHECK_INTERVAL_S: Final = 0.2


def light_wanted(
    alerts: Iterable[Alert],
    severities: Iterable[Severity],
    *,
    unacknowledged_only: bool,
    now_ms: int | None = None,
) -> bool:
    """Whether the andon should be lit for these alerts (pure): an active (not cleared) alert
    of one of ``severities``, not shelved (at ``now_ms``: a shelving that expired no longer
    counts, even before the cloud's ``unshelved`` arrives; None: any shelving counts)."""
    wanted = frozenset(severities)
    return any(
        a.state is AlertState.ACTIVE
        and a.severity in wanted
        and not (unacknowledged_only and a.acked)
        and not shelved(a, now_ms)
        for a in alerts
    )


@dataclass(frozen=True, slots=True)
class AndonTarget:
    host: str
    port: int
    unit_id: int
    coil: int
    timeout_s: float


def andon_target(config: AgentConfig) -> AndonTarget | None:
    """Where the coil is: the named Modbus source's device, or the andon's own host."""
    andon = config.andon
    if andon is None:
        return None
    host, port, unit, timeout = andon.host, andon.port, andon.unit_id, andon.timeout_s
    if andon.source is not None:
        source = config.source(andon.source)
        if source is None or source.type != "modbus":  # pragma: no cover - config validation
            raise ValueError(f"andon.source {andon.source!r} is not a modbus source")
        host, port = source.host, source.port
        unit = source.unit_id if unit is None else unit
    assert host is not None
    return AndonTarget(host, port, 1 if unit is None else unit, andon.coil, timeout)


class CoilState:
    """What the coil should be and when to write it next (pure; times are monotonic s)."""

    def __init__(self, *, retry_s: float, refresh_s: float) -> None:
        self.retry_s = retry_s
        self.refresh_s = refresh_s
        self.wanted = False
        self.written: bool | None = None  # last value the device accepted
        self.writes = 0
        self.failures = 0
        self.last_error: str | None = None
        self._next_at = 0.0  # when an unchanged value is due again (refresh or retry)

    def due(self, now: float) -> bool:
        """A write is due: the wanted value differs from the last one written (and no retry
        wait is running), or the refresh/retry time came."""
        if self.written is not self.wanted and self.last_error is None:
            return True
        return now >= self._next_at

    def set_wanted(self, wanted: bool) -> None:
        if wanted != self.wanted:
            self.wanted = wanted
            self.last_error = None  # a change is written at once, even during a retry wait

    def wrote(self, value: bool, now: float) -> None:
        self.written = value
        self.writes += 1
        self.last_error = None
        self._next_at = now + self.refresh_s

    def failed(self, error: str, now: float) -> None:
        self.failures += 1
        self.last_error = error
        self.written = None  # unknown: the device may have restarted
        self._next_at = now + self.retry_s


class AndonDriver:
    """Keeps the andon coil in step with the agent's active alerts (see the module docstring)."""

    def __init__(
        self,
        config: AndonConfig,
        target: AndonTarget,
        alerts: Callable[[], Iterable[Alert]],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.config = config
        self.target = target
        self._alerts = alerts
        self._monotonic = monotonic
        self._wall_ms = wall_ms
        self.state = CoilState(retry_s=config.retry_s, refresh_s=config.refresh_s)
        self._client: AsyncModbusTcpClient | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> AndonStatus:
        t, s = self.target, self.state
        return AndonStatus(
            device=f"{t.host}:{t.port}/{t.unit_id} coil {t.coil}",
            wanted=s.wanted,
            lit=s.written,
            writes=s.writes,
            failures=s.failures,
            last_error=s.last_error,
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="andon")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def step(self) -> None:
        """Look at the alerts once; write the coil if that is due."""
        cfg = self.config
        self.state.set_wanted(
            light_wanted(
                self._alerts(),
                cfg.severities,
                unacknowledged_only=cfg.unacknowledged_only,
                now_ms=self._wall_ms(),
            )
        )
        now = self._monotonic()
        if not self.state.due(now):
            return
        value = self.state.wanted
        error = await self._write(value)
        now = self._monotonic()
        if error is None:
            if self.state.written is not value:
                log.info("andon: %s %s", self.status.device, "ON" if value else "OFF")
            self.state.wrote(value, now)
        else:
            if self.state.last_error is None:
                log.warning("andon: cannot write %s: %s (retrying)", self.status.device, error)
            self.state.failed(error, now)

    async def _run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(CHECK_INTERVAL_S)

    async def _write(self, value: bool) -> str | None:
        """Write the coil; None when the device confirmed it, else what went wrong."""
        from pymodbus.client import AsyncModbusTcpClient  # noqa: PLC0415 - only when configured
        from pymodbus.exceptions import ModbusException  # noqa: PLC0415

        t = self.target
        if self._client is None:
            self._client = AsyncModbusTcpClient(
                t.host, port=t.port, timeout=t.timeout_s, retries=0, reconnect_delay=0
            )
        client = self._client
        try:
            if not client.connected and not await client.connect():
                return f"cannot connect to {t.host}:{t.port}"
            response = await client.write_coil(t.coil, value, device_id=t.unit_id)
        except (ModbusException, OSError, TimeoutError) as exc:
            client.close()
            return f"{type(exc).__name__}: {exc}"
        if response.isError():
            return f"device refused the write: {response}"
        return None
