"""Prometheus metrics for `GET /metrics`, and the middleware that times every request.

Request counts, latencies and search plans are recorded as requests finish. Everything that is state (points, memory,
index backlog, ingest rows, job states, live recall) is read from the engine at scrape time, so it never
drifts from what `GET /collections/{name}` and `GET /jobs` say.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from index.errors import CollectionNotFound
from nestor_client.models import JobState

__all__ = ["CONTENT_TYPE", "Metrics", "RequestMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# (method, route) -> the operation the per-collection rolling stats chart
_OPS = {
    ("POST", "/collections/{name}/points/search"): "search",
    ("POST", "/collections/{name}/points/search/batch"): "search",
    ("POST", "/collections/{name}/points/search/matrix"): "search",
    ("PUT", "/collections/{name}/points"): "upsert",
}


class Metrics:
    """One registry per app, so several apps in one process (tests) never share series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "nestor_requests",
            "HTTP requests by route template, method, collection and status",
            ["route", "method", "collection", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nestor_request_duration_seconds",
            "HTTP request latency by route template, method and collection",
            ["route", "method", "collection"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queries = Counter(
            "nestor_search_queries",
            "search queries answered (a batch counts each)",
            ["collection"],
            registry=self.registry,
        )
        self.upserted = Counter(
            "nestor_upserted_points", "points written through the points API", ["collection"], registry=self.registry
        )
        self._children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        self._counters: dict[tuple[int, str], Any] = {}

    def observe(self, route: str, method: str, collection: str, status: str, seconds: float) -> None:
        key = (route, method, collection, status)
        pair = self._children.get(key)
        if pair is None:  # labels() takes a lock and builds a tuple: resolve each combination once
            pair = self._children[key] = (
                self.requests.labels(route, method, collection, status),
                self.latency.labels(route, method, collection),
            )
        pair[0].inc()
        pair[1].observe(seconds)

    def counter(self, family: Counter, collection: str) -> Any:
        """`family.labels(collection)`, resolved once per collection."""
        key = (id(family), collection)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = family.labels(collection)
        return child

    def attach(self, state: Any) -> None:
        """Export the engine's state, read from `app.state` (catalog, jobs, monitor) at each scrape."""
        self.registry.register(_StateCollector(state))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        catalog = getattr(self.state, "catalog", None)
        ready = bool(getattr(self.state, "ready", False))
        yield GaugeMetricFamily("nestor_ready", "1 once the collections are recovered", value=float(ready))
        if catalog is None or not ready:
            return
        points = GaugeMetricFamily("nestor_points", "live points per collection", labels=["collection"])
        pending = GaugeMetricFamily(
            "nestor_index_pending_points", "points not in the ANN index yet (searched exactly)", labels=["collection"]
        )
        memory = GaugeMetricFamily(
            "nestor_memory_bytes",
            "bytes per collection and component, in RAM or on disk, as measured by the engine",
            labels=["collection", "component", "where"],
        )
        for name in catalog.names():
            try:
                info = catalog.get(name).info()
            except CollectionNotFound:  # deleted while we scraped
                continue
            points.add_metric([name], info.count)
            pending.add_metric([name], sum(v.index.pending for v in info.vectors.values()) or info.index.pending)
            for component, sizes in info.memory.items():
                memory.add_metric([name, component, "ram"], sizes.ram)
                memory.add_metric([name, component, "disk"], sizes.disk)
        yield from (points, pending, memory)
        jobs = getattr(self.state, "jobs", None)
        if jobs is not None:
            yield from _job_metrics(jobs.list())
        monitor = getattr(self.state, "monitor", None)
        if monitor is not None:
            recall = GaugeMetricFamily(
                "nestor_live_recall",
                "recall@k of the default ANN search against exact search, on a sample of recent queries",
                labels=["collection", "k"],
            )
            k = str(monitor.probe.options.k)
            for name, value in sorted(monitor.probe.latest().items()):
                recall.add_metric([name, k], value)
            yield recall
            yield _plan_metrics(monitor.plans.counts())


def _plan_metrics(counts: dict[str, dict[str, int]]) -> Metric:
    # `strategy` is bounded: plan_label() normalises it and each collection keeps at most MAX_STRATEGIES
    plans = CounterMetricFamily(
        "nestor_search_plans",
        "searches answered, by the plan that ran (the result's strategy)",
        labels=["collection", "strategy"],
    )
    for name, by_strategy in sorted(counts.items()):
        for strategy, n in sorted(by_strategy.items()):
            plans.add_metric([name, strategy], n)
    return plans


def _job_metrics(jobs: list[Any]) -> Iterator[Metric]:
    states = GaugeMetricFamily("nestor_jobs", "ingest jobs by state", labels=["state"])
    counts = dict.fromkeys((s.value for s in JobState), 0)
    rows = CounterMetricFamily("nestor_ingest_rows", "rows upserted by ingest jobs", labels=["collection"])
    failed = CounterMetricFamily("nestor_ingest_failed_rows", "bad rows skipped by ingest jobs", labels=["collection"])
    per: dict[str, list[int]] = {}
    for j in jobs:
        counts[j.state.value] += 1
        totals = per.setdefault(j.collection, [0, 0])
        totals[0] += j.upserted
        totals[1] += j.failed
    for state, n in counts.items():
        states.add_metric([state], n)
    for name, (ok, bad) in sorted(per.items()):
        rows.add_metric([name], ok)
        failed.add_metric([name], bad)
    yield from (states, rows, failed)


class RequestMetrics:
    """Pure ASGI middleware: times each request, labelled by its route template and collection.

    The router stores the matched route in the scope it shares with us, so after the call the template
    (`/collections/{name}/points`) is known. Unknown collection names are not used as labels, so a
    client probing random names cannot blow up the number of series.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, monitor: Any) -> None:
        self.app = app
        self.metrics = metrics
        self.monitor = monitor
        self._templates: dict[Any, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        template = self._template(scope)
        name = scope.get("path_params", {}).get("name", "") if template != "unmatched" else ""
        if name and status >= 400 and not _exists(scope, name):
            name = ""
        method = scope["method"]
        self.metrics.observe(template, method, name, str(status), seconds)
        op = _OPS.get((method, template))
        if op is not None and name:
            self.monitor.telemetry.request(name, op, seconds, error=status >= 400)

    def _template(self, scope: Scope) -> str:
        # a mounted app (the Qdrant surface) names its prefix, so its routes never share a native template
        prefix = getattr(getattr(scope.get("app"), "state", None), "route_prefix", "")
        return prefix + self._route_path(scope) if prefix else self._route_path(scope)

    def _route_path(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return str(route.path)
        # FastAPI's router sets `route` only for its own routes; a plain Starlette route (the search
        # fast path) leaves just its endpoint, so map endpoints back to their templates.
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return "unmatched"
        if endpoint not in self._templates:
            for r in scope["app"].router.routes:
                if getattr(r, "endpoint", None) is endpoint:
                    self._templates[endpoint] = r.path
                    break
        return self._templates.get(endpoint, "unmatched")


def _exists(scope: Scope, name: str) -> bool:
    catalog = getattr(scope["app"].state, "catalog", None)
    if catalog is None:
        return False
    try:
        catalog.get(name)
    except CollectionNotFound:
        return False
    return True
