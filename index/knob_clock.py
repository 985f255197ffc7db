"""Measured search time of candidate knob settings, for calibration to pick the fastest (index/quality.py).

A cost model ranked the candidates before; it undercounted the rerank (random reads of full-precision rows) and
chose oversampling 64 where a larger nprobe with oversampling 6 was twice as fast. Here each candidate is timed
as users run it: one query at a time through the path a single search takes (`index/single.py`: the native
executor, else the planner's fast path, else the general planner), on a fixed subset of the calibration
queries, in CPU time of the calling thread (the single-query path runs on it), so the rest of a busy machine's
load does not count. The planner's costs are not the native path's: at pypi-minilm 95k, timed through the
planner, int8 HNSW's ef 176 x1 looked slower than ef 8 x20, which in users' searches runs a third slower than
the hand-tuned ef 160 x3. Caches still suffer from other load, so a pass is repeated and the fastest pass
counts, and the close contenders are timed again side by side before the choice (`settle`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from index import single
from index.backends.base import F32
from index.contract import Query
from nestor_client.models import SearchParams

if TYPE_CHECKING:
    from index.dense import DenseField

__all__ = ["KnobClock"]

_QUERIES = 100  # single-query searches per timed pass
_CLOSE = 1.25  # contenders within this factor of the fastest are timed again side by side
_ROUNDS = 3  # side-by-side rounds of `settle`


class KnobClock:
    def __init__(self, field: DenseField, queries: F32, k: int) -> None:
        self.field, self.k = field, k
        self.q = np.ascontiguousarray(queries[:_QUERIES])
        self.best: dict[tuple[object, ...], float] = {}  # seconds per query of a setting: its fastest pass

    def _pass(self, p: SearchParams) -> float:
        t0 = time.thread_time()  # CPU time of this thread: the searches run on it, and other load does not count
        for row in range(len(self.q)):
            mat = self.q[row : row + 1]
            single.rank(self.field, Query(mat[0], limit=self.k, params=p, with_payload=False), mat)
        s = (time.thread_time() - t0) / max(len(self.q), 1)
        key = _key(p)
        self.best[key] = min(s, self.best.get(key, s))
        return self.best[key]

    def seconds(self, p: SearchParams) -> float:
        """Seconds per query of `p` (timed twice the first time it is asked: the first pass warms caches)."""
        if _key(p) not in self.best:
            self._pass(p)
            self._pass(p)
        return self.best[_key(p)]

    def settle(self, candidates: list[SearchParams]) -> SearchParams:
        """The fastest of `candidates`: those within `_CLOSE` of the fastest are timed again, interleaved."""
        fastest = min(self.seconds(p) for p in candidates)
        close = [p for p in candidates if self.seconds(p) <= _CLOSE * fastest]
        if len(close) > 1:
            for _ in range(_ROUNDS):
                for p in close:
                    self._pass(p)
        return min(close, key=lambda p: self.best[_key(p)])


def _key(p: SearchParams) -> tuple[object, ...]:
    return p.ef, p.nprobe, p.oversampling
