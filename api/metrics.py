"""/metrics in the Prometheus text format: requests by route and status, latency, encode time, index sizes,
index files left out, build and model identity.

Under gunicorn each worker counts its own requests; prometheus-client's multiprocess mode (the
PROMETHEUS_MULTIPROC_DIR that scripts/api.sh creates empty at every start) adds them up at scrape time.
Index sizes and identity are read from the scraping worker's current index set when scraped (a
collector, not a stored gauge), so a removed dataset disappears at once.
"""
from __future__ import annotations

import os
import platform
import re
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from lib.serve.search import SearchService

RULE_ARGUMENT = re.compile(r"<(?:[^:>]+:)?([^>]+)>")  # <int(max=...):image_id> -> {image_id}, as in the spec
LATENCY_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def project_version() -> str:
    return tomllib.loads(PYPROJECT.read_text())["project"]["version"]


class IndexCollector(Collector):
    """Vectors per dataset, entries per vocabulary, index files left out, and one build_info series naming the
    code and the model."""

    def __init__(self, service: SearchService, version: str) -> None:
        self.service, self.version = service, version

    def collect(self) -> Iterator[GaugeMetricFamily]:
        index_set = self.service.indexes.current()
        vectors = GaugeMetricFamily("clipsearch_vectors", "vectors indexed per dataset", labels=["dataset"])
        for name, dataset in sorted(index_set.datasets.items()):
            vectors.add_metric([name], dataset.count)
        entries = GaugeMetricFamily("clipsearch_vocabulary_entries", "entries per vocabulary", labels=["vocabulary"])
        for name, vocabulary in sorted(index_set.vocabularies.items()):
            entries.add_metric([name], len(vocabulary.entries))
        left_out = GaugeMetricFamily("clipsearch_left_out_files", "index files left out: damaged, unreadable or "
                                     "missing (listed in /indexes)", value=len(index_set.left_out_files))
        model = index_set.model
        info = GaugeMetricFamily("clipsearch_build_info", "the code and model this server runs (value 1)",
                                 labels=["version", "python", "model", "weights_sha256", "dim"])
        info.add_metric([self.version, platform.python_version(), model.spec, model.weights_sha256, str(model.dim)], 1)
        yield from (vectors, entries, left_out, info)


class TimedEncoder:
    """The encoder with its calls timed; everything else is the encoder's own."""

    def __init__(self, encoder: Any, seconds: Histogram) -> None:
        self._encoder, self._seconds = encoder, seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def _timed(self, kind: str, method: Any, items: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(items, **kwargs)
        finally:
            self._seconds.labels(kind).observe(time.perf_counter() - started)

    def encode_texts(self, texts: Any, **kwargs: Any) -> Any:
        return self._timed("text", self._encoder.encode_texts, texts, **kwargs)

    def encode_images(self, images: Any, **kwargs: Any) -> Any:
        return self._timed("image", self._encoder.encode_images, images, **kwargs)


class Metrics:
    """The app's metrics; its registry is the one scraped when the server runs as a single process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("clipsearch_http_requests", "HTTP requests answered", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("clipsearch_http_request_duration_seconds", "time to answer, in the app",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.encode = Histogram("clipsearch_encode_seconds", "time the model took to encode one request's inputs",
                                ["kind"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.text_cache = Counter("clipsearch_text_cache_lookups", "text queries looked up in the worker's cache "
                                  "of their embeddings", ["result"], registry=self.registry)
        self.collector: IndexCollector | None = None

    def text_looked_up(self, hit: bool) -> None:
        self.text_cache.labels("hit" if hit else "miss").inc()

    def started(self) -> None:
        g.clipsearch_started = time.perf_counter()

    def answered(self, response: Response) -> Response:
        # The rule, not the path: /images/{image_id} stays one series whatever the id.
        route = RULE_ARGUMENT.sub(r"{\1}", request.url_rule.rule) if request.url_rule else "<unmatched>"
        self.requests.labels(route, request.method, str(response.status_code)).inc()
        started = g.get("clipsearch_started")
        if started is not None:
            self.latency.labels(route, request.method).observe(time.perf_counter() - started)
        return response

    def exposition(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        assert self.collector is not None, "the index collector is made with the app"
        registry.register(self.collector)
        return generate_latest(registry)


def install_metrics(app: Flask, service: SearchService) -> Metrics:
    """Count every request (registered first, so refusals by later hooks are counted too)."""
    metrics = Metrics()
    metrics.collector = IndexCollector(service, project_version())
    metrics.registry.register(metrics.collector)
    app.before_request(metrics.started)
    app.after_request(metrics.answered)
    app.extensions["clipsearch.metrics"] = metrics
    return metrics


def metrics_text() -> Response:
    return Response(current_app.extensions["clipsearch.metrics"].exposition(), mimetype=CONTENT_TYPE_LATEST)
