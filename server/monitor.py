"""What the server knows about its own traffic: Prometheus metrics, rolling stats and the recall probe.

One `Monitor` per app (`app.state.monitor`). Routers tell it what they did (`searched`, `upserted`);
`stats` is the per-collection block that `GET /collections/{name}` returns and the dashboard draws.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request

from index.catalog import Catalog
from index.contract import AnyCollection, Query
from index.errors import CollectionNotFound
from server.metrics import Metrics
from server.probe import ProbeOptions, RecallProbe
from server.settings import Settings
from server.telemetry import Telemetry

__all__ = ["Monitor", "monitor"]


class Monitor:
    def __init__(self, settings: Settings) -> None:
        self.metrics = Metrics()
        self.telemetry = Telemetry(
            bucket_seconds=settings.stats_bucket_seconds, window_seconds=settings.stats_window_seconds
        )
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

    def upserted(self, collection: str, points: int) -> None:
        self.telemetry.items(collection, "upsert", points)
        self.metrics.counter(self.metrics.upserted, collection).inc(points)

    def stats(self, collection: str) -> dict[str, Any]:
        return {**self.telemetry.stats(collection), "recall": self.probe.status(collection)}

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
        return out


def monitor(request: Request) -> Monitor:
    m: Monitor = request.app.state.monitor
    return m
