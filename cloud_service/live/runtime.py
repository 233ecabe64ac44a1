"""Everything after ingest, assembled: live analytics, rules, lifecycle, delivery and the API.

Built without I/O by :meth:`LiveRuntime.build` (from the app factory); :meth:`start` runs
once the metadata store is migrated (it restores the lifecycle and loads the plan);
:meth:`run` drives the tasks until stopped: the monitor (rules), the dispatcher (outbox to
sinks), the MQTT alert link (alerts to the plant, acknowledgements back) and the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from cloud_service.alerts.dispatcher import Dispatcher
from cloud_service.alerts.email import SmtpSink
from cloud_service.alerts.mqtt_delivery import MqttAlertLink, MqttAlertSink
from cloud_service.alerts.outbox import AlertSink, OutboxPolicy
from cloud_service.alerts.routing import Router
from cloud_service.alerts.rule_store import SqlRuleStore
from cloud_service.alerts.rules import DEFAULT_RULES, Rule, load_rules
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.store import SqlAlertStore
from cloud_service.alerts.stream import AlertStream
from cloud_service.alerts.webhooks import WebhookSink
from cloud_service.analytics.engine import warm_up
from cloud_service.api.app import ApiDeps, create_api
from cloud_service.api.keys import SqlApiKeyStore
from cloud_service.api.server import ApiServer
from cloud_service.ingest.health import HealthCore
from cloud_service.ingest.worker import IngestWorker
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.feed import LiveFeed
from cloud_service.live.history import RebuildReport, rebuild
from cloud_service.live.monitor import Monitor, wall_ms
from cloud_service.live.outputs import OutputWriter
from cloud_service.plans.model import PlanBook
from cloud_service.plans.store import SqlPlanStore
from cloud_service.settings import CloudSettings
from cloud_service.storage.base import TimeSeriesStore
from shared.messages import Alert, AlertAck

log = logging.getLogger(__name__)


@dataclass
class LiveRuntime:
    settings: CloudSettings
    live: LiveAnalytics
    alert_store: SqlAlertStore
    router: Router
    dispatcher: Dispatcher
    link: MqttAlertLink | None
    plans: SqlPlanStore
    keys: SqlApiKeyStore
    health: HealthCore
    rules: list[Rule]
    status: Callable[[], dict[str, Any]] = field(default=lambda: {})
    stream: AlertStream | None = None
    service: AlertService | None = None
    monitor: Monitor | None = None
    api: ApiServer | None = None
    api_error: str | None = None
    store: TimeSeriesStore | None = None
    outputs: OutputWriter | None = None
    rebuilt: RebuildReport | None = None
    rule_store: SqlRuleStore | None = None
    feed: LiveFeed | None = None

    @classmethod
    def build(
        cls,
        settings: CloudSettings,
        engine: AsyncEngine,
        ingest: IngestWorker,
        store: TimeSeriesStore,
    ) -> LiveRuntime:
        a = settings.alerts
        rules = load_rules(a.rules_file or DEFAULT_RULES)  # a bad file stops start-up, by field
        live = LiveAnalytics(settings.live)
        feed: LiveFeed | None = None
        health = ingest.health
        # Births reach every worker (never shared) and the registry's are loaded at start-up:
        # the catalog comes from ingest in both modes, so history can be rebuilt before any
        # message arrives.
        ingest.core.on_birth = live.on_birth
        if settings.live.source == "subscription":
            health = HealthCore(settings.health.stale_after_periods)
            health.hold()  # until the feed connects (``LiveFeed`` resumes it)
            feed = LiveFeed(settings, live, health, f"{settings.mqtt.client_id}-live")
        else:
            ingest.core.on_batch = live.on_batch
        alert_store = SqlAlertStore(engine)
        policy = OutboxPolicy.from_settings(a.outbox)
        router = Router(a, policy)
        sinks: dict[str, AlertSink] = {"webhook": WebhookSink(a.webhooks)}
        if a.email is not None:
            sinks["email"] = SmtpSink(a.email)
        runtime_ref: list[LiveRuntime] = []

        async def on_ack(ack: AlertAck, site: str, gateway: str) -> object:
            service = runtime_ref[0].service
            if service is None:
                raise RuntimeError("alert service not started")  # the link retries
            return await service.acknowledge_from_plant(
                ack, site=site, gateway=gateway, now_ms=wall_ms()
            )

        def plant_alerts(
            gateway: tuple[str, str] | None,
        ) -> dict[tuple[str, str], list[Alert]]:
            service = runtime_ref[0].service
            if service is None:
                raise RuntimeError("alert service not started")  # the link retries
            return service.plant_alerts(gateway)

        link = (
            MqttAlertLink(settings.mqtt, a.mqtt, on_ack, plant_alerts=plant_alerts)
            if a.mqtt.enabled
            else None
        )
        if link is not None:
            sinks["mqtt"] = MqttAlertSink(link)
        o = a.outbox
        dispatcher = Dispatcher(
            alert_store, sinks, policy, router.summary,
            batch=o.batch, lease_ms=int(o.lease_s * 1000), concurrency=o.concurrency,
        )  # fmt: skip
        runtime = cls(
            settings, live, alert_store, router, dispatcher, link,
            SqlPlanStore(engine), SqlApiKeyStore(engine), health, rules,
        )  # fmt: skip
        runtime.feed = feed
        runtime.rule_store = SqlRuleStore(engine)
        runtime.store = store
        runtime.outputs = OutputWriter(live, store)
        live.on_events = runtime.outputs.on_anomalies
        runtime_ref.append(runtime)
        if feed is not None:
            feed.on_health_event = lambda _event: runtime.wake()
        else:
            ingest.on_health_event = lambda _event: runtime.wake()
        return runtime

    def wake(self) -> None:
        if self.monitor is not None:
            self.monitor.wake()

    def set_plans(self, book: PlanBook) -> None:
        self.live.set_plans(book)
        if self.monitor is not None:
            self.monitor.force_refresh()

    def set_rules(self, rules: list[Rule]) -> None:
        self.rules = list(rules)
        if self.monitor is not None:
            self.monitor.set_rules(rules)

    async def start(self) -> None:
        """After migrations: compile (or load) the numba kernels, restore the lifecycle,
        resume the stream's ids, load the plan, rebuild from history."""
        seconds = await asyncio.to_thread(warm_up)
        log.info("analytics kernels ready in %.2fs", seconds)
        self.stream = AlertStream(
            self.settings.alerts.stream,
            history=self.alert_store,
            start_after=await self.alert_store.last_event_id(),
        )
        self.service = await AlertService.open(
            self.alert_store, self.router, stream=self.stream, on_enqueue=self.dispatcher.wake
        )
        self.live.set_plans(await self.plans.load())
        if self.rule_store is not None:  # the TOML file seeds the store on a first start
            self.rules = await self.rule_store.seed_if_empty(self.rules)
        if self.store is not None:
            try:
                self.rebuilt = await rebuild(self.live, self.store)
            except Exception:  # start without history rather than not at all (logged)
                log.exception("could not rebuild live analytics from history")
        self.monitor = Monitor(self.live, self.service, self.rules, health=self.health)
        if self.outputs is not None:
            self.monitor.after_refresh = self.outputs.flush
        self.live.on_change = self.monitor.wake

    async def run(self, stop: asyncio.Event) -> None:
        assert self.service is not None, "call start() first"
        assert self.monitor is not None
        assert self.stream is not None
        tasks = []
        if self.feed is not None:
            tasks.append(asyncio.create_task(self.feed.run(stop), name="live-feed"))
            # retained births and states first, so the first evaluation sees known gateways
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.feed.connected.wait(), 10)
            await asyncio.sleep(0.5)
        tasks += [
            asyncio.create_task(self.monitor.run(stop), name="monitor"),
            asyncio.create_task(self.dispatcher.run(stop), name="dispatcher"),
        ]
        if self.link is not None:
            tasks.append(asyncio.create_task(self.link.run(stop), name="alert-link"))
        api = self.settings.api
        if api.enabled:
            deps = ApiDeps(
                alerts=self.service, alert_store=self.alert_store, stream=self.stream,
                plans=self.plans, keys=self.keys, status=self.status,
                on_plans_changed=self.set_plans, rules=self.rule_store,
                on_rules_changed=self.set_rules,
            )  # fmt: skip
            server = ApiServer(create_api(deps, api), api)
            try:
                await server.start()
            except OSError as exc:  # the data path goes on without the API; loudly
                self.api_error = str(exc)
                log.error("REST API not serving: %s", exc)
            else:
                self.api = server
                log.info("API on http://%s:%d/api/v1", api.host, server.port)
        try:
            await stop.wait()
        finally:
            self.stream.close()
            if self.api is not None:
                await self.api.stop()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
            for t in tasks:
                t.cancel()
