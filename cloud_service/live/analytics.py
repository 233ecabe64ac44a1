"""Live analytics: ingest batches in, the alert rules' ``ConditionInputs`` out.

Every decoded telemetry batch is folded into the anomaly engine at once (no InfluxDB round
trip), stock levels and production counters also into short bounded trails (``trails``).
Forecasts and plan figures (depletion per SKU, consumption against the demand plan,
production against the plan) are recomputed every ``forecast_interval_s``: they move by the
hour, not by the reading. Signal and gateway figures are read fresh at every evaluation.

Which detector owns which condition, so one fault raises one alert: a stuck sensor is the
``sensor_stuck`` rule's (flatline is not scored as an anomaly), silence is ``no_data``'s, a
counter that stops while the plan says run is ``production_below_plan``'s (counters are never
"stuck": a stopped line is a production matter).

Only signals worth a look reach the rules (a recent anomaly, stuck, silent for two periods,
or already tracked by the lifecycle): tens of thousands of quiet signals cost nothing.

Silence is measured as ingest health measures it (``GatewayView``): a signal's silence
counts from its latest good reading, or from its gateway's return (or the cloud's ingest
connecting after a restart) if that is later, so a signal simply awaiting its first reading
after an outage is not silent. While health is held (the cloud restarted and cannot hear the
gateways yet), a gateway still online and its signals are left out of the figures: not
judged, so their alerts neither raise nor clear on figures from before the downtime.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import numpy.typing as npt

from cloud_service.alerts.inputs import (
    ConditionInputs,
    ConsumptionFigures,
    GatewayFigures,
    ProductionFigures,
    SignalFigures,
    StockFigures,
)
from cloud_service.analytics import depletion
from cloud_service.analytics.codes import Reason, reason_name
from cloud_service.analytics.engine import F64, I64, AnomalyEngine, AnomalyEvents
from cloud_service.analytics.kernels.anomaly import FLAT_N
from cloud_service.analytics.plan import (
    Adherence,
    DemandVsPlan,
    PlanPeriod,
    adherence,
)
from cloud_service.ingest.health import GatewayView
from cloud_service.live.consumption import consumption_against_plan
from cloud_service.live.feeds import planned_output, single_product_lines
from cloud_service.live.lines import CounterOutput, LineTotal, finite_or_none, line_totals
from cloud_service.live.series import SeriesIndex, SeriesInfo
from cloud_service.live.settings import LiveSettings
from cloud_service.live.signal_state import FlatRuns, RecentAnomalies
from cloud_service.live.trails import (
    HOUR_MS,
    MINUTE_MS,
    BucketTrail,
    CounterTrail,
)
from cloud_service.plans.model import PlanBook, SkuPolicy
from shared.messages import Birth, Quality, SignalKind, TelemetryBatch

log = logging.getLogger(__name__)

#: Reasons other rules own (see the module docstring): not an "anomaly on a signal".
_OWNED_ELSEWHERE = frozenset({Reason.FLATLINE, Reason.NO_DATA, Reason.COUNTER_STALLED, Reason.NONE})
_GOOD = (int(Quality.GOOD), int(Quality.UNCERTAIN))
#: Without rules to say otherwise: silent for two expected periods is worth a look.
DEFAULT_SILENCE: tuple[tuple[float, float], ...] = ((0.0, 2.0),)
#: Kinds with a history of their own: stock levels (forecasts, consumption) and production
#: counters (attainment, netting). A consumption signal has no figure of its own yet.
_TRAILED = frozenset({SignalKind.STOCK_LEVEL, SignalKind.PRODUCTION_COUNT})


@dataclass(slots=True)
class _Pass:
    """One refresh pass over the stock signals, possibly spread over several calls."""

    sids: list[int]
    feeders: dict[tuple[str, str], list[int]]
    pos: int = 0
    stock: list[StockFigures] = field(default_factory=list)
    consumption: list[ConsumptionFigures] = field(default_factory=list)
    production: list[ProductionFigures] = field(default_factory=list)
    depletion: list[tuple[SeriesInfo, depletion.DepletionResult]] = field(default_factory=list)
    demand: list[tuple[SeriesInfo, DemandVsPlan]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Inflow:
    """A stock's known inflow: the counter of the one line that refills it, and its plan."""

    production: depletion.Production
    planned: list[depletion.PlannedOutput]


class LiveAnalytics:
    def __init__(
        self,
        settings: LiveSettings | None = None,
        plans: PlanBook | None = None,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings or LiveSettings()
        self.plans = plans or PlanBook()
        self.index = SeriesIndex()
        self.engine = AnomalyEngine(1024, sink=self)
        self.on_change = on_change
        #: Every onset the engine flags on ingested data, live or historical (the write-back
        #: to InfluxDB); not those of the start-up's replay (``rebuild_engine``).
        self.on_events: Callable[[AnomalyEvents], None] | None = None
        self._replaying = False
        self.replay_onsets = 0  # flagged by the start-up's replay: neither written nor alerted
        self._stock: dict[int, BucketTrail] = {}
        self._counter: dict[int, CounterTrail] = {}
        self._recent: dict[int, RecentAnomalies] = {}
        self._flat = FlatRuns()
        self._received = np.zeros(0, dtype=np.int64)  # receive time of each series' latest
        #: series id -> number of its gateway (``_gateway_no``), filled as series appear
        self._gw_of = np.zeros(0, dtype=np.int64)
        self._gateway_no: dict[tuple[str, str], int] = {}
        self._pass: _Pass | None = None
        self.stock_figures: list[StockFigures] = []
        self.consumption_figures: list[ConsumptionFigures] = []
        self.production_figures: list[ProductionFigures] = []
        #: The results behind the figures, for the write-back to InfluxDB (``outputs``).
        self.depletion_results: list[tuple[SeriesInfo, depletion.DepletionResult]] = []
        self.adherence_results: list[tuple[SeriesInfo, Adherence]] = []
        self.demand_results: list[tuple[SeriesInfo, DemandVsPlan]] = []
        #: Lines counted per SKU, summed (their figures are among ``production_figures``).
        self.line_totals: list[LineTotal] = []
        self.points = 0
        self.forecast_errors = 0
        #: Series whose figures raised (a bug or data no check foresaw): skipped, counted,
        #: logged once each; the other series' figures go on.
        self.refresh_errors = 0
        self._logged_failures: set[int] = set()

    # -- inputs from ingest ---------------------------------------------------------------
    def on_birth(self, site: str, birth: Birth) -> None:
        ids, retired = self.index.learn(site, birth)
        for sid in retired:  # removed from the gateway's config: no figures, no no-data alert
            self._stock.pop(sid, None)
            self._counter.pop(sid, None)
            self._recent.pop(sid, None)
            if sid < self._received.size:
                self._received[sid] = 0
        for sid, spec in zip(ids, birth.signals, strict=True):
            self.engine.configure(
                [sid],
                counter=spec.kind is SignalKind.PRODUCTION_COUNT,
                period_ms=spec.period_s * 1000.0,
            )

    def on_batch(
        self, site: str, gateway: str, batch: TelemetryBatch, now_ms: int | None = None
    ) -> None:
        """Fold one decoded batch in (called by ingest for every telemetry message)."""
        readings = batch.readings
        if not readings:
            return
        ids = np.array(
            self.index.ids_of(site, gateway, [r.signal for r in readings]), dtype=np.int64
        )
        ts = np.array([r.ts for r in readings], dtype=np.int64)
        values = np.array(
            [r.value if r.value is not None and r.quality in _GOOD else math.nan for r in readings],
            dtype=np.float64,
        )
        self.engine.update(ids, ts, values, historical=batch.historical, now_ms=now_ms)
        if now_ms is not None and not batch.historical:
            if self._received.size < len(self.index):
                grow = max(len(self.index), 2 * self._received.size) - self._received.size
                self._received = np.r_[self._received, np.zeros(grow, dtype=np.int64)]
            # a reading without a good value (COMM_FAILURE, BAD) is no data: a sensor that
            # reports only failures is as silent as one that stopped (the no-data rule's)
            self._received[ids[np.isfinite(values)]] = now_ms
        self.points += len(readings)
        infos = self.index.infos
        for sid, t, v in zip(ids.tolist(), ts.tolist(), values.tolist(), strict=True):
            kind = infos[sid].kind
            if kind not in _TRAILED or not math.isfinite(v):
                continue
            trail = self._stock.get(sid) or self._counter.get(sid) or self.trail(sid)
            if trail is not None:
                trail.add(t, v)

    def flat_baselines(self) -> list[tuple[int, int, int]]:
        """``(series id, longest flat run ms, watched since ms)`` of the announced signals
        watched so far: saved with the outputs, restored at start-up."""
        flat = self._flat
        return [
            (sid, int(flat.longest[sid]), int(flat.first[sid]))
            for sid in np.flatnonzero(flat.first >= 0).tolist()
            if sid < len(self.index) and self.index.infos[sid].spec is not None
        ]

    def restore_baselines(self, items: Iterable[tuple[int, int, int]]) -> None:
        """Baselines saved before a restart (call before :meth:`rebuild_engine`)."""
        for sid, longest_ms, first_ms in items:
            self._flat.restore(sid, longest_ms, first_ms)

    def rebuild_engine(self, series: I64, ts_ms: I64, values: F64) -> int:
        """Stored history into the anomaly engine (no live alerts), and into the flat-run
        baselines the stuck rule compares with; returns the points folded in.

        What the replay flags is dropped: it re-scores stored history from a cold state, so
        its onsets are not those the live engine flagged (and wrote back) when the points
        arrived; written back, every restart would add anomaly records no one saw."""
        self._replaying = True
        try:
            folded = self.engine.rebuild(series, ts_ms, values)
        finally:
            self._replaying = False
        self._flat.learn_history(
            series, ts_ms, values,
            min_repeats=FLAT_N,
            warmup_ms=int(self.settings.stuck_warmup_h * HOUR_MS),
            factor=self.settings.stuck_vs_longest,
        )  # fmt: skip
        return folded

    def trail(self, sid: int) -> BucketTrail | None:
        """The bounded history kept for a stock level or counter (created on first use);
        None for other signals."""
        kind = self.index.infos[sid].kind
        if kind is SignalKind.PRODUCTION_COUNT:
            trail = self._counter.get(sid)
            if trail is None:
                size = self.settings.counter_history_h * 60
                trail = self._counter[sid] = CounterTrail(
                    MINUTE_MS, size, BucketTrail(HOUR_MS, self.settings.stock_history_days * 24)
                )
            return trail
        if kind is SignalKind.STOCK_LEVEL:
            stock = self._stock.get(sid)
            if stock is None:
                size = self.settings.stock_history_days * 24
                stock = self._stock[sid] = BucketTrail(HOUR_MS, size)
            return stock
        return None

    # -- AnalyticsSink (the engine calls these) -------------------------------------------
    def on_anomalies(self, events: AnomalyEvents) -> None:
        if self._replaying:  # the start-up's replay (``rebuild_engine``)
            self.replay_onsets += int(events.series.size)
            return
        if self.on_events is not None:
            self.on_events(events)
        if events.historical:
            return  # replayed data is recorded, never alerted on
        fresh = False
        for sid, t, score, reason in zip(
            events.series.tolist(),
            events.ts_ms.tolist(),
            events.score.tolist(),
            events.reason.tolist(),
            strict=True,
        ):
            if reason in _OWNED_ELSEWHERE:
                continue
            recent = self._recent.get(sid)
            if recent is None:
                recent = self._recent[sid] = RecentAnomalies()
            recent.onsets.append((t, score, reason))
            fresh = True
        if fresh and self.on_change is not None:
            self.on_change()

    def on_silence(self, series: I64, periods: F64) -> None:
        """Silence is read from ingest health at each evaluation; nothing to keep."""

    @property
    def _hold_ms(self) -> int:
        return int(self.settings.anomaly_hold_s * 1000)

    # -- plans and forecasts ----------------------------------------------------------------
    def set_plans(self, book: PlanBook) -> None:
        self.plans = book

    def refresh(self, now_ms: int, budget_ms: float | None = None) -> bool:
        """Recompute the slow figures: depletion, consumption and production against plan.

        With ``budget_ms`` a pass over the stock signals stops after about that much work and
        goes on at the next call (the event loop is shared with ingest; a fleet of SKUs takes
        seconds); the figures of the previous pass stay in use until this one completes.
        Returns True when a pass completed.
        """
        started = time.perf_counter()
        if self._pass is None:
            self._pass = _Pass(list(self._stock), self._feeders())
        p = self._pass
        while p.pos < len(p.sids):
            sid = p.sids[p.pos]
            p.pos += 1
            self._isolated(sid, partial(self._refresh_stock, sid, now_ms, p))
            over = budget_ms is not None and (time.perf_counter() - started) * 1000 >= budget_ms
            if over and p.pos < len(p.sids):
                return False
        counted: list[CounterOutput] = []
        for sid, trail in self._counter.items():

            def count(sid: int = sid, trail: CounterTrail = trail) -> None:
                out = self._production_figures(self.index.infos[sid], trail, now_ms)
                if out is not None:
                    counted.append(out)

            self._isolated(sid, count)
        try:
            totals, p.production = line_totals(counted, now_ms)
        except Exception:
            self.refresh_errors += 1
            log.exception("live analytics: line totals failed; SKU figures kept without them")
            totals, p.production = [], [o.figures for o in counted]
        self.stock_figures, self.consumption_figures = p.stock, p.consumption
        self.production_figures = p.production
        self.depletion_results, self.demand_results = p.depletion, p.demand
        self.adherence_results = [(o.info, o.adherence) for o in counted]
        self.line_totals = totals
        self._pass = None
        return True

    def abandon_pass(self) -> None:
        """Start the next refresh from scratch (the current one failed half-way)."""
        self._pass = None

    def _isolated(self, sid: int, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:
            self.refresh_errors += 1
            if sid not in self._logged_failures:
                self._logged_failures.add(sid)
                info = self.index.infos[sid]
                log.exception(
                    "live analytics: figures of %s/%s/%s failed; skipped",
                    info.site, info.gateway, info.signal,
                )  # fmt: skip

    def _feeders(self) -> dict[tuple[str, str], list[int]]:
        """``(site, sku) -> counters`` of what refills each stock: the counts that name the
        SKU (an MES's per SKU) where there are any, else the counter of a line the plan
        gives that SKU alone. Netting needs exactly one (two would count the output twice)."""
        lines = single_product_lines(self.plans)
        named: dict[tuple[str, str], list[int]] = {}
        by_plan: dict[tuple[str, str], list[int]] = {}
        for sid in self._counter:
            info = self.index.infos[sid]
            spec = info.spec
            if spec is None:
                continue
            if spec.sku:
                named.setdefault((info.site, spec.sku), []).append(sid)
            elif (sku := lines.get((info.site, spec.line or ""))) is not None:
                by_plan.setdefault((info.site, sku), []).append(sid)
        return {**by_plan, **named}

    def _refresh_stock(self, sid: int, now_ms: int, p: _Pass) -> None:
        info = self.index.infos[sid]
        if info.spec is None or info.spec.sku is None:
            return
        ts, level = self._stock[sid].series()
        if ts.size == 0:
            return
        policy = self.plans.policy(info.site, info.spec.sku, info.spec.location)
        feeder = p.feeders.get((info.site, info.spec.sku), [])
        inflow = self._inflow(feeder[0], now_ms) if len(feeder) == 1 else None
        figures = self._stock_figures(info, policy, ts, level, now_ms, inflow, p)
        if figures is not None:
            p.stock.append(figures)
        used = consumption_against_plan(
            info, policy, ts, level, inflow.production if inflow else None, self.plans, now_ms,
            self.settings,
        )  # fmt: skip
        if used is not None:
            p.consumption.append(used[0])
            p.demand.append((info, used[1]))

    def _inflow(self, counter_sid: int, now_ms: int) -> _Inflow | None:
        info = self.index.infos[counter_sid]
        ts, total = self._counter[counter_sid].hourly.series()
        if ts.size < 2 or info.spec is None or info.spec.line is None:
            return None
        planned = planned_output(self.plans, info.site, info.spec.line, now_ms, info.spec.sku)
        return _Inflow(depletion.Production(ts, total), planned)

    def _stock_figures(  # noqa: PLR0917
        self,
        info: SeriesInfo,
        policy: SkuPolicy | None,
        ts: I64,
        level: F64,
        now_ms: int,
        inflow: _Inflow | None,
        p: _Pass,
    ) -> StockFigures | None:
        spec, sku = info.spec, info.spec.sku if info.spec else None
        assert spec is not None
        assert sku is not None
        lead = policy.lead_time_h if policy else None
        base = StockFigures(
            site=info.site, sku=sku, stock=float(level[-1]), location=spec.location,
            gateway=info.gateway, unit=spec.unit or "units", lead_time_h=lead,
        )  # fmt: skip
        warmup = self.settings.forecast_warmup_h * HOUR_MS
        if ts.size < depletion.MIN_PERIODS or ts[-1] - ts[0] < warmup:
            return base
        try:
            result = depletion.analyze(
                ts,
                level,
                lead_time_h=lead or 0.0,
                safety_stock=policy.safety_stock if policy else 0.0,
                service_level=min(max(policy.service_level, 0.5), 0.999) if policy else 0.95,
                review_h=policy.review_h if policy else depletion.DEFAULT_REVIEW_H,
                horizon_h=self.settings.forecast_horizon_h,
                receipts=[
                    depletion.Receipt(r.due_ms, r.quantity)
                    for r in self.plans.receipts_for(
                        info.site, sku, spec.location, after_ms=int(ts[-1])
                    )
                ],
                production=inflow.production if inflow else None,
                planned_output=inflow.planned if inflow else (),
            )
        except (ValueError, ArithmeticError) as exc:
            self.forecast_errors += 1
            log.debug("depletion of %s/%s failed: %s", info.site, spec.sku, exc)
            return base
        p.depletion.append((info, result))
        h = result.hours_from(now_ms)
        return StockFigures(
            site=info.site, sku=sku, stock=result.stock, location=spec.location,
            gateway=info.gateway, unit=spec.unit or "units",
            stockout_p10_h=h["stockout_p10_h"], stockout_p50_h=h["stockout_p50_h"],
            stockout_p90_h=h["stockout_p90_h"], lead_time_h=lead,
            reorder_in_h=h["reorder_in_h"] if policy else None,
            reorder_qty=result.reorder_qty if policy else None,
        )  # fmt: skip

    def _production_figures(
        self, info: SeriesInfo, trail: CounterTrail, now_ms: int
    ) -> CounterOutput | None:
        spec = info.spec
        if spec is None or spec.line is None:
            return None
        running = self.plans.production_at(info.site, spec.line, now_ms)
        if not running:
            return None
        # a whole-line counter is held to all the line's targets, a SKU's count to its SKU's
        # (a SKU the plan does not have now: to nothing, over the line's period)
        targets = [t for t in running if spec.sku is None or t.sku == spec.sku] or running
        period = PlanPeriod(
            min(t.start_ms for t in targets),
            max(t.end_ms for t in targets),
            sum(t.quantity for t in targets if spec.sku is None or t.sku == spec.sku),
        )
        whole = [t for t in running if t.sku is None]
        line_plan = (
            PlanPeriod(
                min(t.start_ms for t in whole),
                max(t.end_ms for t in whole),
                sum(t.quantity for t in whole),
            )
            if whole
            else None
        )
        ts, total = trail.series(since_ms=period.start_ms - 2 * HOUR_MS)
        if ts.size and ts[0] > period.start_ms + MINUTE_MS:
            # a period longer than the minute trail (a week's target): its start from the
            # hourly one, which is kept as long as stock history
            hts, htotal = trail.hourly.series(since_ms=period.start_ms - 2 * HOUR_MS)
            early = hts < ts[0]
            ts, total = np.r_[hts[early], ts], np.r_[htotal[early], total]
        if ts.size == 0 or (ts[0] > period.start_ms + MINUTE_MS and now_ms - ts[0] < HOUR_MS):
            return None  # no reading from before the period: attainment unknown yet
        a = adherence(ts, total, period, now_ms, rate_window_h=self.settings.rate_window_h)
        known = finite_or_none
        figures = ProductionFigures(
            site=info.site, line=spec.line, produced=a.produced,
            planned_so_far=a.planned_so_far, attainment=known(a.attainment),
            projected_attainment=known(a.projected_attainment), sku=spec.sku,
            gateway=info.gateway, period=targets[0].period, unit=spec.unit or "units",
            required_rate_per_h=known(a.required_rate_per_hour),
        )  # fmt: skip
        return CounterOutput(info, figures, a, period, line_plan)

    # -- the snapshot the rules read --------------------------------------------------------
    def inputs(
        self,
        now_ms: int,
        gateways: Sequence[GatewayView] = (),
        tracked: Iterable[tuple[str, str]] = (),
        silence: Sequence[tuple[float, float]] = DEFAULT_SILENCE,
    ) -> ConditionInputs:
        """Figures as of ``now_ms``. ``tracked``: the (site, subject) pairs of signals the
        lifecycle follows (``explain.signal_subject``; a bare signal id: an alert from before
        subjects named the gateway, given figures that let it clear). ``silence``: (ms,
        periods) pairs; a signal silent for at least both of one pair is worth a look (the
        monitor derives them from the rules' thresholds).
        ``gateways``: ingest health, which also says where silence counts from."""
        return ConditionInputs(
            now_ms=now_ms,
            stock=self.stock_figures,
            consumption=self.consumption_figures,
            production=self.production_figures,
            signals=self._signal_figures(now_ms, set(tracked), silence, gateways),
            gateways=[figures for g in gateways if (figures := gateway_figures(g)) is not None],
        )

    def _gateway_clocks(self, gateways: Sequence[GatewayView]) -> tuple[I64, npt.NDArray[np.bool_]]:
        """Per series: the time its silence counts from at the earliest (0: no floor), and
        whether its gateway's silence is held (unknown)."""
        n = len(self.index)
        known = self._gw_of.size
        if known < n:
            numbers = self._gateway_no
            infos = self.index.infos
            new = [numbers.setdefault((i.site, i.gateway), len(numbers)) for i in infos[known:n]]
            self._gw_of = np.r_[self._gw_of, np.array(new, dtype=np.int64)]
        floor = np.zeros(len(self._gateway_no), dtype=np.int64)
        held = np.zeros(len(self._gateway_no), dtype=bool)
        for g in gateways:
            no = self._gateway_no.get((g.site, g.gateway))
            if no is None:
                continue
            floor[no] = g.clocks_ms or 0
            held[no] = g.held and g.online
        gw_of = self._gw_of[:n]
        return floor[gw_of], held[gw_of]

    def _signal_figures(
        self,
        now_ms: int,
        tracked: set[tuple[str, str]],
        silence: Sequence[tuple[float, float]],
        gateways: Sequence[GatewayView] = (),
    ) -> list[SignalFigures]:
        n = len(self.index)
        if n == 0:
            return []
        snap = self.engine.snapshot(np.arange(n, dtype=np.int64))
        infos = self.index.infos
        recv = np.zeros(n, dtype=np.int64)
        known = min(n, self._received.size)
        recv[:known] = self._received[:known]
        # receive time where known (no device clock involved), else the reading's own time;
        # not before its gateway's return: silence counts from there (as ingest health's)
        floor, held = self._gateway_clocks(gateways)
        seen_ms = np.maximum(np.where(recv > 0, recv, snap.last_seen_ms), floor)
        period = np.where(snap.period_ms > 0, snap.period_ms, np.inf)
        quiet = now_ms - seen_ms
        silent = np.zeros(n, dtype=bool)
        for min_ms, min_periods in silence:
            silent |= (quiet >= min_ms) & (quiet >= min_periods * period)
        silent &= snap.seen & ~held
        run = self._flat.update(now_ms, snap.stuck_since_ms, snap.seen)
        warm = (self._flat.first >= 0) & (
            now_ms - self._flat.first >= int(self.settings.stuck_warmup_h * HOUR_MS)
        )
        stuck = (run > 0) & warm & (run > self.settings.stuck_vs_longest * self._flat.longest)
        self._flat.flag(stuck)
        for sid in list(self._recent):
            self._recent[sid].prune(now_ms - self._hold_ms)
            if not self._recent[sid].onsets:
                del self._recent[sid]
        look = set(np.flatnonzero(silent | stuck).tolist()) | set(self._recent)
        legacy: list[tuple[str, str, list[int]]] = []
        for site, subject in tracked:
            ids = self.index.by_subject.get((site, subject))
            if ids is not None:
                look.update(ids)
            elif (old := self.index.by_signal.get((site, subject))) is not None:
                legacy.append((site, subject, old))
        out = []
        for sid in sorted(look):
            info = infos[sid]
            spec = info.spec
            if spec is None:
                continue  # never announced: no expected period, no owner to tell
            if held[sid]:
                continue  # its gateway's silence is unknown yet: not judged (kept as is)
            recent = self._recent.get(sid)
            score, reason = recent.worst() if recent is not None else (0.0, int(Reason.NONE))
            counter = spec.kind is SignalKind.PRODUCTION_COUNT
            out.append(
                SignalFigures(
                    site=info.site,
                    gateway=info.gateway,
                    signal=info.signal,
                    label=info.label,
                    sku=spec.sku,
                    line=spec.line,
                    location=spec.location,
                    anomaly_score=score,
                    anomaly_reason=reason_name(reason) if recent is not None else None,
                    anomaly_count=len(recent.onsets) if recent is not None else 0,
                    stuck_since_ms=None
                    if counter or not stuck[sid]
                    else int(snap.stuck_since_ms[sid]),
                    last_seen_ms=int(seen_ms[sid]) if snap.seen[sid] else None,
                    period_s=spec.period_s,
                )
            )
        return out + self._legacy_figures(legacy, held)

    def _legacy_figures(
        self, legacy: Iterable[tuple[str, str, list[int]]], held: npt.NDArray[np.bool_]
    ) -> list[SignalFigures]:
        """Figures that let an alert raised before signal subjects named their gateway (its
        subject the bare signal id) clear: no rule evaluates that subject any more, and the
        lifecycle would keep it open for ever. Not judged while a gateway of the signal is
        held (as its own figures)."""
        out = []
        for site, signal, ids in sorted(legacy):
            if any(held[sid] for sid in ids):
                continue
            gateways = {self.index.infos[sid].gateway for sid in ids}
            gateway = gateways.pop() if len(gateways) == 1 else ""
            label = next((i.label for sid in ids if (i := self.index.infos[sid]).spec), "")
            out.append(SignalFigures(site, gateway, signal, label=label, legacy=True))
        return out


def gateway_figures(g: GatewayView) -> GatewayFigures | None:
    """A gateway's figures for the rules; None (not judged) while health is held and the
    gateway is not known to be offline: its silence is the cloud's downtime, not its own.
    An online gateway's silence counts from ``quiet_since_ms`` (its last telemetry, or the
    cloud's ingest connecting if later); an offline one keeps its last telemetry."""
    if g.online:
        if g.held:
            return None
        return GatewayFigures(g.site, g.gateway, True, g.quiet_since_ms, g.down_since_ms)
    return GatewayFigures(g.site, g.gateway, False, g.last_seen_ms, g.down_since_ms)
