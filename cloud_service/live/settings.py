"""``[live]``: how the live analytics turn the ingest stream into alert inputs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LiveSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    #: "ingest": fed by this process's ingest (one ingest worker). "subscription": its own
    #: MQTT subscription outside the share group (several ingest workers; run the live loop in
    #: one of them and set ``enabled = false`` in the others).
    source: Literal["ingest", "subscription"] = "ingest"
    #: Rules are evaluated at once when an anomaly arrives, and at least this often (timers:
    #: stuck for N minutes, silence, on/off delays).
    evaluate_interval_s: float = Field(default=1.0, gt=0)
    #: Depletion, consumption and production figures move by the hour: recomputed this often.
    forecast_interval_s: float = Field(default=60.0, gt=0)
    #: Work per evaluation on a forecast pass (the event loop is shared with ingest): a fleet
    #: of SKUs is refreshed a slice at a time; None: the whole pass at once.
    refresh_budget_ms: float | None = Field(default=20.0, gt=0)
    #: An anomaly keeps its signal's score up this long, so a spike between two evaluations
    #: is not missed and its alert does not flap.
    anomaly_hold_s: float = Field(default=600.0, gt=0)
    #: A flat run is "stuck" only when longer than this many times the signal's longest
    #: earlier flat run, and not before the signal has been watched this long.
    stuck_vs_longest: float = Field(default=2.0, ge=1)
    stuck_warmup_h: float = Field(default=24.0, ge=0)
    stock_history_days: int = Field(default=35, ge=2, le=400)  # hourly levels kept per stock signal
    counter_history_h: int = Field(default=48, ge=2, le=24 * 14)  # minute totals kept per counter
    #: Stockout and reorder figures need this much stock history first (a day or two of
    #: lumpy demand says little about its rate).
    forecast_warmup_h: float = Field(default=72.0, ge=0)
    forecast_horizon_h: int = Field(default=2160, ge=24)
    consumption_window_h: float = Field(
        default=24.0, gt=0
    )  # consumption against plan over this window
    baseline_days: int = Field(default=28, ge=2)  # past windows that say how unusual an excess is
    min_baseline_days: int = Field(default=7, ge=2)
    rate_window_h: float = Field(default=2.0, gt=0)  # run rate for the projected attainment
    #: Start-up: each signal's raw history replayed into the anomaly engine is what its model
    #: needs to be as ready as before the restart (its warm-up at its period, then two days
    #: for the time-of-day profile), and at least this many hours.
    rebuild_hours: float = Field(default=6.0, ge=0)
    #: ... but no more raw points than this in all (expected at the announced periods): a
    #: fleet of fast signals would otherwise read for minutes before ingesting. Over budget,
    #: slow signals keep their whole need and fast ones share the rest (``history``).
    rebuild_max_points: int = Field(default=5_000_000, ge=0)
