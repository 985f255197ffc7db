"""Rolling per-collection request stats: rates and latency percentiles over the last minutes.

A series is a ring of fixed-width time buckets. A bucket holds request, item (queries or points) and
error counts and a log-scale latency histogram, so recording is O(1) and a percentile needs no stored
samples. Bins grow by 15%, so a reported percentile is within about 7% of the true value.

`PlanCounts` counts, per collection, how many searches each plan (the result's `strategy`) answered
since the server started, and which filter keys were scanned for want of a payload index.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["OPS", "PlanCounts", "Series", "Telemetry", "is_payload_scan", "plan_label"]

OPS = ("search", "upsert")  # what the dashboard charts per collection
_MIN_LATENCY = 1e-5  # seconds: bin 0 holds everything faster
_GROWTH = 1.15
_LOG_GROWTH = math.log(_GROWTH)
_BINS = 128  # the last bin starts at 1e-5 * 1.15**127, about 50 minutes


def _bin(seconds: float) -> int:
    if seconds <= _MIN_LATENCY:
        return 0
    return min(int(math.log(seconds / _MIN_LATENCY) / _LOG_GROWTH) + 1, _BINS - 1)


def _bin_value(i: int) -> float:
    """A bin's geometric middle (bin i spans min*g**(i-1) .. min*g**i)."""
    return _MIN_LATENCY if i == 0 else _MIN_LATENCY * _GROWTH ** (i - 0.5)


def _percentiles(hist: list[int], total: int, qs: tuple[float, ...]) -> list[float | None]:
    if total == 0:
        return [None for _ in qs]
    out: list[float | None] = []
    seen, i = 0, 0
    for q in qs:
        target = max(1, math.ceil(q * total))
        while seen + hist[i] < target:
            seen += hist[i]
            i += 1
        out.append(_bin_value(i))
    return out


class _Bucket:
    __slots__ = ("errors", "hist", "items", "requests", "slot", "timed")

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.requests = 0
        self.items = 0
        self.errors = 0
        self.timed = 0  # requests in `hist` (the successful ones)
        self.hist: list[int] | None = None  # allocated on the first timed request


class Series:
    """One operation on one collection: a ring of `buckets` buckets of `bucket_seconds` each."""

    def __init__(self, bucket_seconds: float, buckets: int, now: float) -> None:
        self.bucket_seconds = bucket_seconds
        self.started = now
        self._ring: list[_Bucket | None] = [None] * buckets

    def _bucket(self, now: float) -> _Bucket:
        slot = int(now // self.bucket_seconds)
        i = slot % len(self._ring)
        b = self._ring[i]
        if b is None or b.slot != slot:
            b = self._ring[i] = _Bucket(slot)
        return b

    def request(self, seconds: float, error: bool, now: float) -> None:
        b = self._bucket(now)
        b.requests += 1
        if error:
            b.errors += 1
            return
        if b.hist is None:
            b.hist = [0] * _BINS
        b.hist[_bin(seconds)] += 1
        b.timed += 1

    def items(self, n: int, now: float) -> None:
        self._bucket(now).items += n

    def snapshot(self, now: float, rate_seconds: float) -> dict[str, Any]:
        """Totals over the window, percentiles (seconds), the recent rate, and one chart point per bucket."""
        bs, n = self.bucket_seconds, len(self._ring)
        current = int(now // bs)
        hist, timed = [0] * _BINS, 0
        requests = items = errors = recent_items = recent_requests = 0
        rate_from = now - rate_seconds
        cols: dict[str, list[Any]] = {k: [] for k in ("t", "requests", "items", "errors", "p50", "p95", "p99")}
        for slot in range(current - n + 1, current + 1):
            b = self._ring[slot % n]
            if b is None or b.slot != slot:
                b = _Bucket(slot)
            requests, items, errors = requests + b.requests, items + b.items, errors + b.errors
            if (slot + 1) * bs > rate_from:
                recent_items += b.items
                recent_requests += b.requests
            if b.hist is not None:
                timed += b.timed
                hist = [x + y for x, y in zip(hist, b.hist, strict=True)]
            p = _percentiles(b.hist, b.timed, (0.5, 0.95, 0.99)) if b.hist is not None else [None, None, None]
            for key, value in zip(cols, (slot * bs, b.requests, b.items, b.errors, *p), strict=True):
                cols[key].append(value)
        # A young series divides by its age, not by the whole rate window.
        span = max(min(rate_seconds, now - self.started), min(bs, rate_seconds))
        p50, p95, p99 = _percentiles(hist, timed, (0.5, 0.95, 0.99))
        return {
            "requests": requests,
            "items": items,
            "errors": errors,
            "rate": recent_items / span,
            "request_rate": recent_requests / span,
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "series": cols,
        }


class Telemetry:
    """Every collection's series; thread-safe (requests are recorded on the event loop, read anywhere)."""

    def __init__(self, *, bucket_seconds: float = 10.0, window_seconds: float = 600.0, rate_seconds: float = 60.0):
        self.bucket_seconds = bucket_seconds
        self.window_seconds = window_seconds
        self.rate_seconds = rate_seconds
        self._buckets = max(1, math.ceil(window_seconds / bucket_seconds))
        self._series: dict[tuple[str, str], Series] = {}
        self._lock = threading.Lock()

    def _get(self, collection: str, op: str, now: float) -> Series:
        s = self._series.get((collection, op))
        if s is None:
            s = self._series[(collection, op)] = Series(self.bucket_seconds, self._buckets, now)
        return s

    def request(self, collection: str, op: str, seconds: float, *, error: bool = False) -> None:
        now = time.time()
        with self._lock:
            self._get(collection, op, now).request(seconds, error, now)

    def items(self, collection: str, op: str, n: int) -> None:
        """Queries searched or points upserted: what the `rate` counts."""
        now = time.time()
        with self._lock:
            self._get(collection, op, now).items(n, now)

    def stats(self, collection: str) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {"window_seconds": self.window_seconds, "bucket_seconds": self.bucket_seconds}
        with self._lock:
            for op in OPS:
                s = self._get(collection, op, now)
                out[op] = s.snapshot(now, self.rate_seconds)
        return out

    def forget(self, keep: set[str]) -> None:
        """Drop the series of collections that no longer exist."""
        with self._lock:
            for key in [k for k in self._series if k[0] not in keep]:
                del self._series[key]


# -- search plans -------------------------------------------------------------------------------

MAX_STRATEGIES = 32  # distinct plan labels per collection; past that a new one counts as OTHER
MAX_SCANNED_KEYS = 32  # unindexed filter keys remembered per collection
MAX_LABEL_CHARS = 64
OTHER = "other"
PAYLOAD_SCAN = "payload_scan"  # the suffix a strategy gets when a filter key had no payload index
_ODD = re.compile(r"[^a-z0-9_+:]+")
_DETAIL = re.compile(r":[a-z_]+=[^:]*")  # `:missing_shards=0,3` on a partial sharded answer


@functools.lru_cache(maxsize=512)
def plan_label(strategy: str) -> str:
    """A strategy as a bounded label: lower case, `[a-z0-9_+:]` only, no `:key=value` details, 64 chars.

    Strategies are open-ended engine strings (`hnsw_acorn`, `exact_filtered+payload_scan`, a sharded
    `hnsw+hnsw_filtered`, `partial:hnsw:missing_shards=1`); this keeps what names the plan and drops
    anything that could vary per request."""
    s = _DETAIL.sub("", strategy.lower())
    s = _ODD.sub("_", s).strip("_:+")[:MAX_LABEL_CHARS].rstrip("_:+")
    return s or "unknown"


def is_payload_scan(label: str) -> bool:
    return PAYLOAD_SCAN in label.split("+")


class _Plans:
    __slots__ = ("counts", "scanned")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.scanned: dict[str, int] = {}  # filter key -> searches that scanned it without an index


class PlanCounts:
    """How many searches each plan (`strategy`) answered, per collection, since the server started.

    Label cardinality is bounded twice: `plan_label` strips whatever could vary per request, and each
    collection keeps at most `MAX_STRATEGIES` labels (later ones count as `other`). Thread-safe."""

    def __init__(self) -> None:
        self.started = time.time()
        self._plans: dict[str, _Plans] = {}
        self._lock = threading.Lock()

    def record(self, collection: str, strategies: Iterable[str], scanned_keys: Iterable[str] = ()) -> None:
        labels = [plan_label(s) for s in strategies]
        with self._lock:
            p = self._plans.get(collection)
            if p is None:
                p = self._plans[collection] = _Plans()
            for label in labels:
                if label not in p.counts and len(p.counts) >= MAX_STRATEGIES:
                    label = OTHER
                p.counts[label] = p.counts.get(label, 0) + 1
            for key in scanned_keys:
                if key in p.scanned or len(p.scanned) < MAX_SCANNED_KEYS:
                    p.scanned[key] = p.scanned.get(key, 0) + 1

    def counts(self) -> dict[str, dict[str, int]]:
        """`{collection: {strategy: searches}}`, for the Prometheus scrape."""
        with self._lock:
            return {name: dict(p.counts) for name, p in self._plans.items()}

    def stats(self, collection: str) -> dict[str, Any]:
        """The `plans` block of a collection's stats: counts by strategy, most frequent first."""
        with self._lock:
            p = self._plans.get(collection) or _Plans()
            counts, scanned = dict(p.counts), dict(p.scanned)
        total = sum(counts.values())
        order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "since": self.started,
            "total": total,
            "strategies": [
                {"strategy": s, "count": n, "share": n / total, "payload_scan": is_payload_scan(s)} for s, n in order
            ],
            "scanned_keys": [{"key": k, "searches": n} for k, n in sorted(scanned.items(), key=lambda kv: -kv[1])],
        }

    def forget(self, keep: set[str]) -> None:
        """Drop the counts of collections that no longer exist."""
        with self._lock:
            for name in [n for n in self._plans if n not in keep]:
                del self._plans[name]
