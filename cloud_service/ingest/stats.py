"""A read-only view of a worker's condition, for status pages, logs and tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloud_service.ingest.worker import IngestWorker


class IngestStats:
    """Live figures read from the worker and its metrics (nothing is copied)."""

    def __init__(self, worker: IngestWorker) -> None:
        self._w = worker
        self.last_error = ""

    @property
    def messages(self) -> int:
        return self._w.received

    @property
    def unacked(self) -> int:
        return self._w.received - self._w.acked

    @property
    def points_written(self) -> int:
        return self._w.persister.points_written

    @property
    def batches_written(self) -> int:
        return int(self._w.metrics.value("flightdeck_ingest_writes_total"))

    @property
    def write_retries(self) -> int:
        return self._w.persister.health.retries

    @property
    def store_up(self) -> bool:
        return "timeseries" not in self._w.persister.health.failing

    @property
    def metadata_up(self) -> bool:
        return "metadata" not in self._w.persister.health.failing

    @property
    def backpressure(self) -> bool:
        return self._w.persister.health.backpressure

    @property
    def connected(self) -> bool:
        return bool(self._w.metrics.value("flightdeck_ingest_mqtt_connected"))

    @property
    def acks_published(self) -> int:
        return int(self._w.metrics.value("flightdeck_ingest_acks_published_total"))

    @property
    def ack_publish_failures(self) -> int:
        return int(self._w.metrics.value("flightdeck_ingest_ack_publish_failures_total"))

    @property
    def dead_letters(self) -> dict[str, int]:
        m = self._w.metrics
        out = {}
        for metric in m.dead_letters.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.value:
                    out[sample.labels["reason"]] = int(sample.value)
        return out

    def as_dict(self) -> dict[str, Any]:
        names = [
            "messages", "unacked", "points_written", "batches_written", "write_retries",
            "store_up", "metadata_up", "backpressure", "connected", "acks_published",
            "ack_publish_failures", "dead_letters", "last_error",
        ]  # fmt: skip
        out = {name: getattr(self, name) for name in names}
        out["failing"] = dict(self._w.persister.health.failing)
        return out

    def __repr__(self) -> str:
        return f"IngestStats({self.as_dict()})"
