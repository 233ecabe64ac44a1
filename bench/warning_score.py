"""Stockout warnings scored against real stockouts: shared by the offline and the live bench.

A warning is a list of episodes ``(start, end)``. A real stockout at T counts once T is at least
the lead time past the first scored instant; it is **warned in time** when the episode active at
T (ending no earlier than ``T - slack``) started at or before ``T - lead time``. An episode with
no real stockout between its start and its end + lead time is a **false alarm**. The share of
time a warning is on (``active``) is the caller's: an evaluation count offline, time live.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

HOUR_MS = 3_600_000


@dataclass(slots=True)
class Score:
    counted: int = 0
    in_time: int = 0
    leads_h: list[float] = field(default_factory=list)
    episodes: int = 0
    false: int = 0
    active: float = 0.0  # on for this much (evaluations, or ms) ...
    span: float = 0.0  # ... of this much

    def add(self, other: Score) -> None:
        self.counted += other.counted
        self.in_time += other.in_time
        self.leads_h += other.leads_h
        self.episodes += other.episodes
        self.false += other.false
        self.active += other.active
        self.span += other.span

    def row(self, name: str, lead: str, months: float) -> str:
        med = f"{statistics.median(self.leads_h):.0f}" if self.leads_h else "-"
        share = f"{self.in_time / self.counted:.0%}" if self.counted else "-"
        active = self.active / self.span if self.span else 0.0
        return (
            f"  {name:16s} {lead:>6s} {self.counted:9d} {self.in_time:7d} {share:>6s} "
            f"{med:>13s} {self.episodes:8d} {self.false:5d} {self.false / months:8.2f} "
            f"{active:7.0%}"
        )


def score_episodes(
    eps: Sequence[tuple[int, int]],
    stockouts: Sequence[int],
    lead_ms: int,
    first: int,
    slack_ms: int = 0,
) -> Score:
    """Episodes starting before ``first`` (a warm-up) are neither scored nor counted."""
    sc = Score()
    for t_out in stockouts:
        if t_out < first + lead_ms:
            continue
        sc.counted += 1
        active = [s for s, e in eps if s <= t_out <= e + slack_ms]
        if active:
            sc.leads_h.append((t_out - active[0]) / HOUR_MS)
            if active[0] <= t_out - lead_ms:
                sc.in_time += 1
    for s, e in eps:
        if s < first:
            continue
        sc.episodes += 1
        if not any(s <= t_out <= e + lead_ms for t_out in stockouts):
            sc.false += 1
    return sc
