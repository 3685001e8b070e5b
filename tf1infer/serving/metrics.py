"""Prometheus metrics of a server, with ``prometheus-client``, on TF Serving's path ``/monitoring/prometheus/metrics``.

Each server has its own registry (two servers in one process, as in tests,
keep their counts apart). What is measured:

- ``tf1infer_serving_requests_total{model, api, method, code}``: requests answered, by outcome (``OK`` or
  the error code TF Serving would give);
- ``tf1infer_serving_request_latency_seconds{model, api, method}``: time from the request read to its answer;
- ``tf1infer_serving_batch_size{model, version}``: rows of each run the micro-batcher gathered;
- ``tf1infer_serving_queued_requests{model, version, signature}``: requests waiting for a run, read when scraped;
- ``tf1infer_serving_requests_in_flight``: requests being answered now (both APIs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# From 0.5 ms (a small model, batched) to 30 s (the default REST deadline).
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    """The counters, histograms and gauges of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tf1infer_serving_requests",
            "Requests answered, by model, API, method and status code.",
            ["model", "api", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tf1infer_serving_request_latency_seconds",
            "Time from a request read to its answer.",
            ["model", "api", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "tf1infer_serving_batch_size",
            "Rows of each run of the model (gathered requests).",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queued = Gauge(
            "tf1infer_serving_queued_requests",
            "Requests waiting for a run.",
            ["model", "version", "signature"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "tf1infer_serving_requests_in_flight", "Requests being answered now.", registry=self.registry
        )
        self.in_flight_now = 0  # The same, readable (the event loop's thread alone changes it).

    def batch_observer(self, model: str, version: int) -> Callable[[int], None]:
        """What a signature's micro-batcher calls with each run's rows."""
        child = self.batch_size.labels(model, str(version))
        return child.observe

    def watch_queue(self, model: str, version: int, signature: str, queued: Callable[[], Any]) -> None:
        """Report ``queued()`` as the signature's queue depth whenever metrics are scraped."""
        self.queued.labels(model, str(version), signature).set_function(queued)

    def started(self) -> None:
        self.in_flight_now += 1
        self.in_flight.inc()

    def answered(self, model: str, api: str, method: str, code: str, seconds: float) -> None:
        self.in_flight_now -= 1
        self.in_flight.dec()
        self.requests.labels(model, api, method, code).inc()
        self.latency.labels(model, api, method).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "PATH", "ServerMetrics"]
