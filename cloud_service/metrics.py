"""Prometheus metrics of the cloud service, in a registry per app (not the global one).

A registry per app lets tests run several apps in one process and read each one's values
(``registry.get_sample_value``); :func:`serve` exposes one over HTTP when configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from shared.errors import Reason


@dataclass
class IngestMetrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter("flightdeck_ingest_messages", "MQTT messages taken in", registry=r)
        self.points = Counter(
            "flightdeck_ingest_points_stored", "Points written to the time-series store", registry=r
        )
        self.writes = Counter("flightdeck_ingest_writes", "Write cycles completed", registry=r)
        self.retries = Counter(
            "flightdeck_ingest_write_retries",
            "Failed writes retried (acks withheld meanwhile)",
            ["target"],
            registry=r,
        )
        self.dead_letters = Counter(
            "flightdeck_dead_letters", "Rejected messages or readings", ["reason"], registry=r
        )
        for reason in Reason:  # every series exists from the start, at 0
            self.dead_letters.labels(reason.value)
        self.evicted = Counter(
            "flightdeck_dead_letters_evicted",
            "Oldest dead letters evicted by the bound",
            registry=r,
        )
        self.duplicates = Counter(
            "flightdeck_ingest_duplicate_batches",
            "Batches stored again (redelivery, replay)",
            registry=r,
        )
        self.gaps = Counter(
            "flightdeck_ingest_seq_gaps",
            "Batch seqs seen missing when a later one arrived",
            registry=r,
        )
        self.filled = Counter(
            "flightdeck_ingest_seq_filled", "Missing batch seqs that arrived later", registry=r
        )
        self.missing = Gauge(
            "flightdeck_ingest_seq_missing", "Batch seqs outstanding behind stored ones", registry=r
        )
        self.store_up = Gauge(
            "flightdeck_ingest_store_up",
            "1 while writes to the store succeed",
            ["target"],
            registry=r,
        )
        self.backpressure = Gauge(
            "flightdeck_ingest_backpressure",
            "1 while a write is failing and messages are held un-acked at the broker",
            registry=r,
        )
        self.unacked = Gauge(
            "flightdeck_ingest_unacked_messages", "Messages received and not yet acked", registry=r
        )
        self.connected = Gauge("flightdeck_ingest_mqtt_connected", "1 while connected", registry=r)
        self.acks = Counter(
            "flightdeck_ingest_acks_published", "End-to-end acks published", registry=r
        )
        self.ack_failures = Counter(
            "flightdeck_ingest_ack_publish_failures", "Acks paho refused to queue", registry=r
        )
        self.health_events = Counter(
            "flightdeck_health_events", "Gateway and signal health events", ["kind"], registry=r
        )
        self.signals = Gauge(
            "flightdeck_signals", "Signals by health status", ["status"], registry=r
        )
        for target in ("timeseries", "metadata"):
            self.store_up.labels(target).set(1)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent), for status pages and tests."""
        return self.registry.get_sample_value(name, labels) or 0.0


def serve(metrics: IngestMetrics, host: str, port: int) -> tuple[Any, int]:
    """Start the exposition server in a thread; returns (server, bound port)."""
    server, _thread = start_http_server(port, host, registry=metrics.registry)
    return server, int(server.server_port)
