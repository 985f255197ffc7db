"""The live recall probe: rerun a sample of each collection's recent queries exactly, and compare.

Searches leave their query vectors in a small ring buffer per collection. Every `interval` seconds a
background thread takes up to `sample` of them, runs the collection's default ANN search and an exact
one (`SearchParams(exact=True)`), and records recall@k: the share of the exact top k the ANN answer
found. A collection whose data, index and queries did not change since its last probe is skipped,
since its answer would be the same.

Its cost is bounded twice: by the settings, and by a CPU budget. After a round that took `c` seconds
(thread CPU time or wall time, the larger), the next one waits at least `c / cpu_budget`, so the probe
never takes more than `cpu_budget` of a core, whatever the number or size of the collections.
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from index.contract import AnyCollection, Query
from nestor_client.models import Metric, SearchParams

__all__ = ["ProbeOptions", "RecallProbe", "found_at_k", "recall_at_k", "recall_warning"]

log = logging.getLogger("nestor.probe")

F32 = npt.NDArray[np.float32]
_EXACT = SearchParams(exact=True)
_TIE = 1e-4  # an ANN hit scoring as well as the exact k-th (within this) is a tie, not a miss
_DROP = 0.05  # a fall in recall worth a warning even above the threshold


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    interval: float = 30.0  # seconds between rounds
    sample: int = 16  # queries rerun per collection per round (0 turns the probe off)
    k: int = 10
    cpu_budget: float = 0.02  # share of one core
    warn_below: float = 0.9
    buffer: int = 256  # recent queries kept per collection
    history: int = 240  # probe results kept per collection


@dataclass(slots=True)
class _State:
    queries: deque[tuple[F32, str | None]]  # (query vector, the named vector it searched)
    seen: int = 0  # queries ever remembered: tells a new query apart from an old one
    last_key: tuple[Any, ...] | None = None
    history: deque[tuple[float, float, int]] = field(default_factory=deque)  # (time, recall, queries)


def recall_at_k(ann: list[tuple[Any, float]], exact: list[tuple[Any, float]], k: int, lower_is_better: bool) -> float:
    """The share of the exact top k that the ANN top k found, counting equal-score ties as found."""
    found, total = found_at_k(ann, exact, k, lower_is_better)
    return found / total if total else 1.0


def found_at_k(
    ann: list[tuple[Any, float]], exact: list[tuple[Any, float]], k: int, lower_is_better: bool
) -> tuple[int, int]:
    """(exact top-k neighbours the ANN top k found, counting equal-score ties as found; how many there are)."""
    truth = exact[:k]
    if not truth:
        return 0, 0
    ids = {pid for pid, _ in truth}
    kth = truth[-1][1]
    found = 0
    for pid, score in ann[:k]:
        tied = score <= kth + _TIE if lower_is_better else score >= kth - _TIE
        found += pid in ids or tied
    return min(found, len(truth)), len(truth)


def recall_warning(history: list[float], k: int, warn_below: float) -> str | None:
    """Why recall looks wrong, or None: the latest probe is under `warn_below`, or the last three
    average `_DROP` below the median of the probes before them. One probe samples few queries, so a
    single low probe against the best one so far would be noise, not a drop."""
    if not history:
        return None
    now = history[-1]
    if now < warn_below:
        return f"recall@{k} is {now:.3f}, below {warn_below:.2f}"
    before, recent = history[-33:-3], history[-3:]
    if len(before) >= 3 and len(recent) == 3:
        was, avg = statistics.median(before), statistics.fmean(recent)
        if was - avg >= _DROP:
            return f"recall@{k} fell from {was:.3f} to {avg:.3f} (the last three probes)"
    return None


class RecallProbe:
    def __init__(self, options: ProbeOptions | None = None) -> None:
        self.options = options or ProbeOptions()
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random(0)
        self.rounds = 0

    # -- the search path's side ------------------------------------------------------------

    def remember(self, collection: str, queries: Iterable[Query]) -> None:
        """Keep copies of query vectors (a request's buffers may be reused). Called on every search.

        Only the event loop calls this, and a deque append is atomic, so the lock is taken only to add
        a collection; the probe thread copies the deque under the lock and tolerates a racing append.
        """
        if self.options.sample <= 0:
            return
        st = self._states.get(collection)
        if st is None:
            with self._lock:
                st = self._states.setdefault(collection, _State(deque(maxlen=self.options.buffer)))
        for q in queries:
            if q.sparse is not None:  # sparse searches are exact: nothing to probe
                continue
            st.queries.append((np.array(q.vector, dtype=np.float32, copy=True), q.using))
            st.seen += 1

    # -- results -----------------------------------------------------------------------------

    def status(self, collection: str) -> dict[str, Any]:
        o = self.options
        with self._lock:
            st = self._states.get(collection)
            hist = list(st.history) if st is not None else []
            buffered = len(st.queries) if st is not None else 0
        latest = hist[-1] if hist else None
        return {
            "k": o.k,
            "latest": latest[1] if latest else None,
            "checked_at": latest[0] if latest else None,
            "queries_buffered": buffered,
            "interval_seconds": o.interval,
            "sample": o.sample,
            "warn_below": o.warn_below,
            "warning": self._warning(hist),
            "history": {"t": [h[0] for h in hist], "recall": [h[1] for h in hist], "queries": [h[2] for h in hist]},
        }

    def latest(self) -> dict[str, float]:
        with self._lock:
            return {name: st.history[-1][1] for name, st in self._states.items() if st.history}

    def _warning(self, hist: list[tuple[float, float, int]]) -> str | None:
        return recall_warning([h[1] for h in hist], self.options.k, self.options.warn_below)

    # -- the probe -------------------------------------------------------------------------

    def probe(self, name: str, coll: AnyCollection, *, force: bool = False) -> float | None:
        """Probe one collection now; the recall, or None when there is nothing (new) to probe."""
        o = self.options
        with self._lock:
            st = self._states.get(name)
            if st is None or not st.queries or o.sample <= 0:
                return None
            seen, pool = st.seen, list(st.queries)
        index = coll.info().index
        key = (coll.seq, index.indexed, index.pending, index.state, seen)
        if key == st.last_key and not force:
            return None
        picked = self._rng.sample(pool, min(o.sample, len(pool)))
        exact = coll.search([Query(v, limit=o.k, with_payload=False, params=_EXACT, using=u) for v, u in picked])
        total = 0.0
        per_vector: dict[str | None, list[int]] = {}  # found, neighbours, queries: a recall target's feedback
        below_of = getattr(coll, "recall_probe_below", None)  # local collections with a recall target
        below = {u: below_of(u) for u in {u for _, u in picked}} if below_of is not None else {}
        for (v, u), ex in zip(picked, exact, strict=True):
            # One at a time: the single-query path is the one users hit, and it stays on this thread.
            lower = coll.vector_config(u)[1].metric is Metric.l2
            truth = [(h.id, h.score) for h in ex.hits]
            ann = coll.search([Query(v, limit=o.k, with_payload=False, using=u)])[0]
            got = found_at_k([(h.id, h.score) for h in ann.hits], truth, o.k, lower)
            total += got[0] / got[1] if got[1] else 1.0
            acc = per_vector.setdefault(u, [0, 0, 0, 0, 0])
            acc[0], acc[1], acc[2] = acc[0] + got[0], acc[1] + got[1], acc[2] + 1
            if (p := below.get(u)) is not None:  # the rung below, on the same query: may the knobs come down?
                cheaper = coll.search([Query(v, limit=o.k, with_payload=False, using=u, params=p)])[0]
                more = found_at_k([(h.id, h.score) for h in cheaper.hits], truth, o.k, lower)
                acc[3], acc[4] = acc[3] + more[0], acc[4] + more[1]
        recall = total / len(picked)
        feedback = getattr(coll, "observe_recall", None)  # local collections; a sharded one has no targets yet
        if feedback is not None:
            for u, (found, neighbours, queries, found_below, of_below) in per_vector.items():
                p = below.get(u)
                feedback(u, found, neighbours, queries, None if p is None else (p, found_below, of_below))
        with self._lock:
            st.last_key = key
            st.history.append((time.time(), recall, len(picked)))
            while len(st.history) > o.history:
                st.history.popleft()
        return recall

    def run_round(self, collections: Callable[[], dict[str, AnyCollection]]) -> float:
        """Probe every collection once; returns the round's cost in seconds (see the module doc)."""
        cpu, wall = time.thread_time(), time.perf_counter()
        colls = collections()
        with self._lock:
            for gone in [n for n in self._states if n not in colls]:
                del self._states[gone]
        for name, coll in colls.items():
            if self._stop.is_set():
                break
            try:
                self.probe(name, coll)
            except Exception:  # a collection deleted or closed under us; the next round sees it gone
                log.debug("recall probe of %s failed", name, exc_info=True)
        self.rounds += 1
        return max(time.thread_time() - cpu, time.perf_counter() - wall)

    def start(self, collections: Callable[[], dict[str, AnyCollection]]) -> None:
        self._thread = threading.Thread(target=self._loop, args=(collections,), name="recall-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self, collections: Callable[[], dict[str, AnyCollection]]) -> None:
        delay = self.options.interval
        while not self._stop.wait(delay):
            cost = self.run_round(collections)
            delay = max(self.options.interval, cost / self.options.cpu_budget)
