"""What the server knows about its own traffic: Prometheus metrics, rolling stats and the recall probe.

One `Monitor` per app (`app.state.monitor`). Routers tell it what they did (`searched`, `planned`,
`upserted`); `stats` is the per-collection block that `GET /collections/{name}` returns and the dashboard draws.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Any

from fastapi import Request

from index.catalog import Catalog
from index.contract import AnyCollection, Query, QueryResult
from index.errors import CollectionNotFound
from server.metrics import Metrics
from server.probe import ProbeOptions, RecallProbe
from server.settings import Settings
from server.telemetry import PAYLOAD_SCAN, PlanCounts, Telemetry

__all__ = ["Monitor", "monitor", "unindexed_keys"]


class Monitor:
    def __init__(self, settings: Settings) -> None:
        self.metrics = Metrics()
        self.telemetry = Telemetry(
            bucket_seconds=settings.stats_bucket_seconds, window_seconds=settings.stats_window_seconds
        )
        self.plans = PlanCounts()
        self.probe = RecallProbe(
            ProbeOptions(
                interval=settings.probe_interval_seconds,
                sample=settings.probe_sample_size,
                cpu_budget=settings.probe_cpu_budget,
                warn_below=settings.recall_warn_threshold,
            )
        )

    def searched(self, collection: str, queries: Iterable[Query]) -> None:
        """On every search request: keep it short (a few microseconds)."""
        queries = list(queries)
        self.telemetry.items(collection, "search", len(queries))
        self.metrics.counter(self.metrics.queries, collection).inc(len(queries))
        self.probe.remember(collection, queries)

    def planned(self, coll: AnyCollection, queries: Iterable[Query], results: Iterable[QueryResult]) -> None:
        """After every search request: count each result's plan, and the filter keys a scan read unindexed."""
        strategies: list[str] = []
        scanned: list[str] = []
        for q, r in zip(queries, results, strict=True):
            strategies.append(r.strategy)
            if PAYLOAD_SCAN in r.strategy and q.filter is not None:  # rare, and already a slow search
                scanned.extend(unindexed_keys(q.filter, coll.config.payload_schema))
        self.plans.record(coll.name, strategies, scanned)

    def upserted(self, collection: str, points: int) -> None:
        self.telemetry.items(collection, "upsert", points)
        self.metrics.counter(self.metrics.upserted, collection).inc(points)

    def stats(self, collection: str) -> dict[str, Any]:
        return {
            **self.telemetry.stats(collection),
            "recall": self.probe.status(collection),
            "plans": self.plans.stats(collection),
        }

    def start(self, catalog: Catalog) -> None:
        self.probe.start(lambda: self._collections(catalog))

    def stop(self) -> None:
        self.probe.stop()

    def _collections(self, catalog: Catalog) -> dict[str, AnyCollection]:
        out: dict[str, AnyCollection] = {}
        for name in catalog.names():
            try:
                out[name] = catalog.get(name)
            except CollectionNotFound:
                pass
        self.telemetry.forget(set(out))  # once per probe round: stats of deleted collections go
        self.plans.forget(set(out))
        return out


def unindexed_keys(flt: Any, schema: Container[str]) -> list[str]:
    """The payload keys a filter names that have no payload index, each once, in the order they appear.

    Walks `must`/`should`/`must_not` and reads a condition's key wherever the filter model keeps it
    (`key`, `is_empty.key`, `is_null.key`, `nested.key`), so a condition kind added later still counts."""
    out: dict[str, None] = {}

    def walk(node: Any) -> None:
        key = getattr(node, "key", None)
        for ref in ("is_empty", "is_null", "nested"):
            key = key or getattr(getattr(node, ref, None), "key", None)
        if isinstance(key, str) and key not in schema:
            out[key] = None
        for clause in ("must", "should", "must_not"):
            for child in getattr(node, clause, None) or ():
                walk(child)

    walk(flt)
    return list(out)


def monitor(request: Request) -> Monitor:
    m: Monitor = request.app.state.monitor
    return m
