"""The agent's status snapshot, gathered from its parts (see :mod:`edge_agent.status`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.status import AgentStatus, ConnectionStatus, DeliveryStatus, SpoolStatus
from edge_agent.version import agent_version

if TYPE_CHECKING:
    from edge_agent.agent import Agent


def build_status(agent: Agent) -> AgentStatus:
    """What ``/status.json`` and ``edge-agent status`` show."""
    now_wall, now_mono = agent.clock.wall_ms(), agent.clock.mono_ms()
    totals = agent.store.totals
    oldest = agent.store.oldest_created_ms()
    ledger = agent.store.ledger
    pub = agent.publisher
    b = agent.config.broker
    streams: list[dict[str, int | str]] = [
        {"boot": s.boot, "lo": s.lo, "top": s.top, "acked": s.acked} for s in agent.outbox.streams()
    ]
    return AgentStatus(
        site=agent.config.site,
        gateway=agent.config.gateway,
        boot=agent.boot,
        version=agent_version(),
        started_ms=agent.started_ms,
        now_ms=now_wall,
        connection=ConnectionStatus(
            connected=agent.outbox.connected,
            broker=f"{'mqtts' if b.tls else 'mqtt'}://{b.host}:{b.port}",
            connects=0 if pub is None else pub.connects,
            since_ms=agent.connection_since,
            protocol="" if pub is None else pub.version.describe,
        ),
        spool=SpoolStatus(
            path=str(agent.store.path),
            batches=totals.batches,
            readings=totals.readings,
            bytes=totals.bytes,
            max_bytes=agent.limits.max_bytes,
            policy=agent.limits.policy.value,
            oldest_age_s=None if oldest is None else max(0, now_wall - oldest) / 1000,
            quarantined=list(agent.quarantined),
            corrupt_at_runtime=agent.corrupt_at_runtime,
            write_errors=agent.spool_errors,
            last_write_error=agent.last_spool_error,
            writable=not agent.spool_down,
            held_bytes=agent.writer.unsaved_bytes,
        ),
        readings_per_s=agent.readings_in.rate(now_mono),
        published_readings_per_s=agent.readings_out.rate(now_mono),
        readings_total=agent.readings_total,
        suppressed_by_deadband=agent.processor.stats.suppressed,
        drops_by_reason=ledger.per_reason(),
        drops_by_signal=ledger.per_signal(),
        sources=[p.health for p in agent.pollers.values()],
        last_ack=agent.last_ack,
        delivery=DeliveryStatus(
            inflight=agent.outbox.inflight,
            live_sent=agent.outbox.stats.live_sent,
            backlog_sent=agent.outbox.stats.backlog_sent,
            rewinds=agent.outbox.stats.rewinds,
            queue_full=agent.sender.queue_full,
            publish_errors=agent.sender.publish_errors,
            broker_rejected=0 if pub is None else pub.rejected,
            streams=streams,
        ),
        clock_steps=agent.clock_steps,
        last_clock_step_ms=agent.last_clock_step_ms,
        alerts=agent.alerts.active(),
        pending_alert_acks=len(agent.alerts.pending_acks()),
        config_hash=agent.config.config_hash(),
        reloads=agent.reloads,
        andon=None if agent.andon is None else agent.andon.status,
    )
