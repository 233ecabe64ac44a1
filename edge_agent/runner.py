"""Wiring and lifecycle: open the spool, start MQTT, the status page and the pollers, run
until SIGTERM/SIGINT, reload on SIGHUP, stop without losing what was read.

A graceful stop lets every poller finish the read in progress, closes and commits the open
batches, publishes *offline* and waits (briefly) for PUBACKs; whatever the cloud has not acked
stays in the spool for the next boot. A reload (SIGHUP, or the cloud's ``reload_config``
command) re-reads the file: sources whose configuration did not change keep running, changed
ones finish their current read before they are replaced, and the open batches, sequence
numbers and spool are untouched, so no reading is lost. Broker, identity, spool path and
status page settings need a restart (the reload says so and applies the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Final

import msgspec

from edge_agent.agent import Agent
from edge_agent.andon import AndonDriver, andon_target
from edge_agent.config import AgentConfig, load_config
from edge_agent.delivery import TokenBucket
from edge_agent.errors import ConfigError
from edge_agent.identity import SystemClock, new_boot_id
from edge_agent.polling import Poller
from edge_agent.processing import rules_for
from edge_agent.publisher import MqttPublisher
from edge_agent.spool.policy import SpoolLimits
from edge_agent.spool.store import SpoolStore
from edge_agent.status import AgentStatus
from edge_agent.status_server import StatusServer
from edge_agent.version import agent_version

log = logging.getLogger(__name__)

#: How long a graceful stop waits for the broker to acknowledge what is queued.
STOP_TIMEOUT_S: Final = 5.0
#: Sections a reload cannot change in a running agent.
RESTART_ONLY: Final = ("site", "gateway", "topic_prefix", "broker", "status", "andon")


async def run_agent(
    config: AgentConfig,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    config_path: str | Path | None = None,
    on_ready: asyncio.Future[Agent] | None = None,
) -> AgentStatus:
    """Run one gateway's agent until ``stop`` is set (or SIGTERM/SIGINT); returns its final
    status. With ``config_path``, SIGHUP reloads the configuration from that file."""
    loop = asyncio.get_running_loop()
    agent, publisher = _build(config, loop)
    store, boot = agent.store, agent.boot
    stop = stop or asyncio.Event()
    reload = asyncio.Event()
    agent.on_reload_request = reload.set
    handlers = {signal.SIGTERM: stop.set, signal.SIGINT: stop.set, signal.SIGHUP: reload.set}
    if handle_signals:
        for signum, handler in handlers.items():
            loop.add_signal_handler(signum, handler)
    server = StatusServer(config.status, agent) if config.status.enabled else None
    log.info(
        "edge agent %s: site %s gateway %s boot %s, %d source(s), %d signal(s), spool %s",
        agent_version(),
        config.site,
        config.gateway,
        boot,
        len(config.sources),
        len(config.signals),
        store.path,
    )
    expirer: asyncio.Task[None] | None = None
    try:
        if server is not None:
            try:
                agent.status_port = await server.start()
            except OSError as exc:  # the data path matters more than the page
                log.error("status page not started on %s: %s", config.status.port, exc)
                server = None
        publisher.start()
        target = andon_target(config)
        if config.andon is not None and target is not None:
            agent.andon = AndonDriver(config.andon, target, agent.active_alerts)
            agent.andon.start()
        agent.start_polling()
        expirer = asyncio.create_task(_expire_periodically(agent), name="spool-expiry")
        if on_ready is not None and not on_ready.done():
            on_ready.set_result(agent)
        await _serve(agent, stop, reload, config_path)
    finally:
        if handle_signals:
            for signum in handlers:
                loop.remove_signal_handler(signum)
        if expirer is not None:
            expirer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await expirer
        if agent.andon is not None:
            await agent.andon.stop()
        await agent.stop_polling()
        agent.close_batches()
        await _wait_acked(agent, agent.config.delivery.stop_ack_wait_s)
        await asyncio.to_thread(publisher.stop, STOP_TIMEOUT_S)
        agent.stop_timers()
        if server is not None:
            await server.stop()
        final = agent.snapshot()
        agent.store.close()
    log.info(
        "edge agent stopped: %d readings read, %d batch(es) / %d reading(s) left in the spool",
        final.readings_total,
        final.spool.batches,
        final.spool.readings,
    )
    return final


def _build(config: AgentConfig, loop: asyncio.AbstractEventLoop) -> tuple[Agent, MqttPublisher]:
    """Open the spool (moving a corrupt one aside), build the agent and its MQTT session."""
    clock = SystemClock()
    started_ms = clock.wall_ms()
    boot = new_boot_id(started_ms)
    store, moved = SpoolStore.open_or_quarantine(
        config.spool_path, check_on_start=config.spool.check_on_start, now_ms=started_ms
    )
    try:
        agent = Agent(
            config, store=store, boot=boot, started_ms=started_ms, clock=clock, quarantined=moved
        )
    except BaseException:
        store.close()
        raise
    publisher = MqttPublisher(
        config.broker,
        topics=config.topics,
        site=config.site,
        gateway=config.gateway,
        client_id=config.client_id,
        boot=boot,
        birth=agent.birth(),
        events=agent,
        loop=loop,
        wall_ms=clock.wall_ms,
    )
    agent.attach(publisher)
    return agent, publisher


async def _serve(
    agent: Agent, stop: asyncio.Event, reload: asyncio.Event, path: str | Path | None
) -> None:
    while not stop.is_set():
        stopping = asyncio.ensure_future(stop.wait())
        reloading = asyncio.ensure_future(reload.wait())
        await asyncio.wait([stopping, reloading], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        reloading.cancel()
        if reload.is_set() and not stop.is_set():
            reload.clear()
            if path is None:
                log.warning("reload requested, but the agent was not started from a file")
                continue
            await _reload(agent, path)


async def _reload(agent: Agent, path: str | Path) -> None:
    """Re-read ``path`` and apply it. Never raises: a reload must not end a running agent."""
    try:
        new = await asyncio.to_thread(load_config, path)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        return
    except Exception:  # a bug in loading: still no reason to stop reading the plant
        log.exception("reload refused (unexpected error), keeping the running configuration")
        return
    try:
        await apply_reload(agent, new)
    except Exception:
        log.exception("reload failed while being applied; the agent keeps running")


async def _wait_acked(agent: Agent, within_s: float) -> None:
    """Give the cloud a moment to ack what was sent, so less is replayed after a restart."""
    deadline = loop_time() + within_s
    outbox = agent.outbox
    while outbox.connected and not outbox.all_acked() and loop_time() < deadline:  # noqa: ASYNC110 - polls pure state
        await asyncio.sleep(0.05)


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def _expire_periodically(agent: Agent) -> None:
    while True:
        await asyncio.sleep(agent.config.spool.expire_check_s)
        agent.expire()


async def apply_reload(agent: Agent, new: AgentConfig) -> None:
    """Apply a new configuration to a running agent (see the module docstring)."""
    old = agent.config
    for name in RESTART_ONLY:
        if getattr(old, name) != getattr(new, name):
            log.warning("reload: %s changed; that needs a restart (not applied)", name)
    if old.spool.path != new.spool.path:
        log.warning("reload: spool.path changed; that needs a restart (not applied)")
    keep = {name: getattr(old, name) for name in RESTART_ONLY}
    new = msgspec.structs.replace(
        new, **keep, spool=msgspec.structs.replace(new.spool, path=old.spool.path)
    )
    sources = {s.id: s for s in new.sources}
    kept = {
        source_id
        for source_id, poller in agent.pollers.items()
        if (config := sources.get(source_id)) is not None
        and (signals := new.signals_of(source_id))
        and poller.same_as(config, signals)
    }
    # every new source is built before anything changes: one that cannot be built leaves the
    # running configuration as it was (the caller logs the error)
    starting = [
        Poller(config, signals, clock=agent.clock, sink=agent.ingest)
        for config in new.sources
        if config.id not in kept and (signals := new.signals_of(config.id))
    ]
    for source_id, poller in list(agent.pollers.items()):
        if source_id not in kept:
            await poller.stop()  # its read in progress is ingested first
            del agent.pollers[source_id]
    agent.config = new
    agent.batcher.configure(
        max_readings=new.batching.max_readings,
        max_age_ms=round(new.batching.max_age_s * 1000),
    )
    agent.processor.reconfigure(rules_for(new))
    agent.processor.min_valid_ms = new.clock.min_valid_ms
    agent.limits = SpoolLimits.from_config(new.spool)
    d = new.delivery
    outbox = agent.outbox
    outbox.window = d.window
    outbox.live_queue_max = d.live_queue_max
    outbox.resend_after_ms = round(d.resend_after_s * 1000)
    outbox.resend_max_ms = round(d.resend_max_s * 1000)
    outbox.bucket = TokenBucket(d.catchup_readings_per_s, d.catchup_burst_readings)
    for poller in starting:
        agent.pollers[poller.id] = poller
        poller.start()
    agent.reloads += 1
    agent.request_birth()
    log.info(
        "configuration reloaded: %d source(s), %d signal(s), hash %s",
        len(agent.pollers),
        len(new.signals),
        new.config_hash()[:12],
    )
