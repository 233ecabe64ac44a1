"""Who this agent is: version, boot id, birth message, and the clocks it reads."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping

from edge_agent.config import AgentConfig
from edge_agent.version import agent_version
from shared.messages import Birth, SignalSpec


class SystemClock:
    """Wall time for readings (device time), monotonic time for schedules and ages."""

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


def new_boot_id(started_ms: int) -> str:
    """A per-boot id: start time plus randomness (the clock may be wrong right after boot)."""
    return f"{started_ms}-{secrets.token_hex(4)}"


def build_birth(
    config: AgentConfig, boot: str, started_ms: int, dropped: Mapping[str, int] | None = None
) -> Birth:
    return Birth(
        gateway=config.gateway,
        site=config.site,
        boot=boot,
        agent_version=agent_version(),
        config_hash=config.config_hash(),
        started_ms=started_ms,
        signals=[
            SignalSpec(
                id=s.id,
                kind=s.kind,
                unit=s.unit,
                sku=s.sku,
                location=s.location,
                line=s.line,
                period_s=s.period_s,
                description=s.description,
            )
            for s in config.signals
        ],
        dropped=dict(dropped or {}),
    )
