"""Prometheus metrics of the workers, served on LLMNER_METRICS_PORT (0 = not served).

Queue depths are gauges refreshed when scraped (a collector reads them from Redis), so they are
right even when no task runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from workers.jobs import JobStore

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

DOCUMENTS = Counter("llmner_documents_total", "Documents by outcome", ["outcome"])  # published|dead|rejected
CHUNKS = Counter("llmner_chunks_total", "Chunks whose entities were stored")
DEAD_LETTERS = Counter("llmner_dead_letters_total", "Entries written to the dead stream", ["stage"])
STAGE_SECONDS = Histogram("llmner_stage_seconds", "Latency per stage", ["stage"], buckets=_LATENCY_BUCKETS)
# stage: ingest (validate+chunk per document), infer (per micro-batch), assemble, end_to_end (submit -> published)
BATCH_SIZE = Histogram("llmner_infer_batch_size", "Chunks per inference micro-batch",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
MODEL_LOAD_SECONDS = Gauge("llmner_model_load_seconds", "Time to load the model bundle in this process")
REDELIVERIES = Counter("llmner_redelivered_chunks_total", "Chunks processed again after a worker died")


class QueueDepthCollector:
    """Reads queue and stream lengths from Redis at scrape time."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("llmner_queue_depth", "Items waiting in Redis", labels=["queue"])
        try:
            depths = self.store.queue_depths()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because Redis is down
            log.warning("queue depth scrape failed: %s", type(exc).__name__)
            return
        for name, value in depths.items():
            gauge.add_metric([name], float(value))
        yield gauge


_started = False
_start_lock = threading.Lock()


def serve(port: int, store: JobStore, addr: str = "127.0.0.1") -> bool:
    """Start the metrics HTTP server once per process, queue depths read through ``store``; False when
    disabled or the port is taken.

    It binds ``addr`` (LLMNER_METRICS_ADDR), loopback by default: the chart sets the pod IP, so
    that Prometheus reaches it and nothing else on the node's other interfaces does."""
    global _started
    with _start_lock:
        if _started or port <= 0:
            return _started
        try:
            start_http_server(port, addr=addr)
        except OSError as exc:
            log.warning("metrics port %d unavailable (%s); metrics not served by this process", port, exc.strerror)
            return False
        REGISTRY.register(QueueDepthCollector(store))
        _started = True
        return True
