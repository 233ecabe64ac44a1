"""Scenarios: a simulated plant described in TOML (schema in ``docs/simulator.md``)."""

from firmware_sim.scenario.model import Scenario
from firmware_sim.scenario.parse import (
    DEFAULT_SCENARIO,
    default_scenario,
    load_scenario,
    parse_scenario,
)

__all__ = ["DEFAULT_SCENARIO", "Scenario", "default_scenario", "load_scenario", "parse_scenario"]
