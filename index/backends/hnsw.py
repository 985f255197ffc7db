"""HNSW through hnswlib.

hnswlib's `add_items` is not safe against a concurrent `knn_query` (its README says so), and
`resize_index` is safe against nothing, so searches share a read lock and mutations take the
write lock. Adds go in small chunks so searches interleave with a long build.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
from pathlib import Path

import hnswlib
import numpy as np

from index.backends.base import F32, I64, Hits, IndexParams, Space, empty_hits
from index.rwlock import RWLock

__all__ = ["HnswIndex"]

_ADD_CHUNK = 128  # adds hold the write lock: small chunks bound how long a search waits (p99 under load)


class HnswIndex:
    def __init__(
        self,
        dim: int,
        space: Space,
        *,
        m: int = 16,
        ef_construction: int = 200,
        ef: int = 64,
        capacity: int = 1024,
        seed: int = 100,
        threads: int | None = None,
    ) -> None:
        self.dim = dim
        self.space = space
        self.m = m
        self.ef_construction = ef_construction
        self.ef = ef
        self.threads = threads or os.cpu_count() or 1
        self._lock = RWLock()
        self._index = hnswlib.Index(space=space.value, dim=dim)
        self._index.init_index(max_elements=capacity, M=m, ef_construction=ef_construction, random_seed=seed)
        self._index.set_ef(ef)
        self._deleted = 0
        self._current_ef = ef

    @property
    def count(self) -> int:
        return int(self._index.get_current_count()) - self._deleted

    @property
    def is_trained(self) -> bool:
        return True

    def train(self, sample: F32) -> None:
        return None

    def add(self, vectors: F32, labels: I64) -> None:
        for start in range(0, len(labels), _ADD_CHUNK):
            v = vectors[start : start + _ADD_CHUNK]
            lab = labels[start : start + _ADD_CHUNK]
            with self._lock.write():
                need = self._index.get_current_count() + len(lab)
                if need > self._index.get_max_elements():
                    self._index.resize_index(max(need, 2 * self._index.get_max_elements()))
                self._index.add_items(v, lab, num_threads=self.threads)

    def remove(self, labels: I64) -> None:
        with self._lock.write():
            for label in labels.tolist():
                try:
                    self._index.mark_deleted(label)
                except RuntimeError:
                    continue  # unknown or already deleted
                self._deleted += 1

    def search(self, queries: F32, k: int, params: IndexParams, allowed: I64 | None = None) -> Hits:
        live = self.count
        kk = min(k, live)
        if kk == 0:
            return empty_hits(len(queries), k)
        ef = max(params.ef or self.ef, kk)
        filt = None
        threads = 1 if len(queries) == 1 else self.threads
        if allowed is not None:
            allowed_set = set(allowed.tolist())
            filt = allowed_set.__contains__
            threads = 1  # the Python callback holds the GIL anyway
        with self._lock.read():
            if ef != self._current_ef:
                # set_ef is a plain field store; racing searches at most use a neighbouring ef.
                self._index.set_ef(ef)
                self._current_ef = ef
            try:
                labels, dist = self._index.knn_query(queries, k=kk, num_threads=threads, filter=filt)
            except RuntimeError:
                # hnswlib refuses when it finds fewer than k (tiny graphs, strict filters).
                return self._search_rowwise(queries, k, kk, threads, filt)
        return self._to_hits(labels, dist, k)

    def search_one(self, query: F32, k: int, ef: int | None) -> tuple[list[int], list[float]] | None:
        """One unfiltered query as plain lists (labels, scores): the collection's fast path.

        None when the graph cannot answer k directly (small or heavily deleted graphs); the caller
        then takes the general path.
        """
        kk = min(k, self.count)
        if kk == 0:
            return None
        ef = max(ef or self.ef, kk)
        with self._lock.read():
            if ef != self._current_ef:
                self._index.set_ef(ef)
                self._current_ef = ef
            try:
                labels, dist = self._index.knn_query(query, k=kk, num_threads=1)
            except RuntimeError:
                return None
        d = dist[0].tolist()
        scores = [1.0 - x for x in d] if self.space is Space.ip else [-x for x in d]
        return labels[0].tolist(), scores

    def _search_rowwise(self, queries: F32, k: int, kk: int, threads: int, filt: object) -> Hits:
        out = empty_hits(len(queries), k)
        for i, q in enumerate(queries):
            want = kk
            while want > 0:
                try:
                    lab, dist = self._index.knn_query(q[None, :], k=want, num_threads=1, filter=filt)
                except RuntimeError:
                    want //= 2
                    continue
                h = self._to_hits(lab, dist, k)
                out.labels[i], out.scores[i] = h.labels[0], h.scores[0]
                break
        return out

    def _to_hits(self, labels: np.ndarray, dist: np.ndarray, k: int) -> Hits:
        scores: F32 = (np.float32(1.0) - dist) if self.space is Space.ip else -dist
        if labels.shape[1] == k:
            return Hits(labels.astype(np.int64, copy=False), scores)
        hits = empty_hits(len(labels), k)
        hits.labels[:, : labels.shape[1]] = labels.astype(np.int64)
        hits.scores[:, : labels.shape[1]] = scores
        return hits

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            child = _fork_save(self._index, directory / "graph.bin")
            meta = {
                "kind": "hnsw",
                "dim": self.dim,
                "space": self.space.value,
                "m": self.m,
                "ef_construction": self.ef_construction,
                "ef": self.ef,
                "deleted": self._deleted,
            }
        if child:
            _wait_child(child)  # outside the lock: adds go on while the child writes its snapshot
        (directory / "meta.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path, *, threads: int | None = None) -> HnswIndex:
        meta = json.loads((directory / "meta.json").read_text())
        idx = cls(
            int(meta["dim"]),
            Space(meta["space"]),
            m=meta["m"],
            ef_construction=meta["ef_construction"],
            ef=meta["ef"],
            capacity=1,
            threads=threads,
        )
        idx._index = hnswlib.Index(space=meta["space"], dim=int(meta["dim"]))
        idx._index.load_index(str(directory / "graph.bin"), allow_replace_deleted=False)
        idx._index.set_ef(idx.ef)
        idx._deleted = int(meta["deleted"])
        return idx

    def ram_bytes(self) -> int:
        # hnswlib reports the size its structures serialise to, which is what it holds in RAM
        # for the current elements (capacity slack is counted separately below).
        used = int(self._index.index_file_size())
        per_element = used / max(1, self._index.get_current_count())
        slack = (self._index.get_max_elements() - self._index.get_current_count()) * per_element
        return int(used + slack)

    def memory(self) -> dict[str, int]:
        """RAM by part: hnswlib keeps each vector inside its level-0 block, next to the links."""
        total = self.ram_bytes()
        vectors = 4 * self.dim * int(self._index.get_max_elements())
        return {"graph": max(0, total - vectors), "codes": vectors, "ids": 0}


def _fork_save(index: hnswlib.Index, path: Path) -> int:
    """Write the graph from a forked child, whose copy-on-write snapshot is the graph as of now.

    hnswlib's `save_index` holds the GIL for the whole write (0.27 s for 40k x 384, measured), which
    stalled every request of the server, and under a mixed load made the p99 latency 24x the median.
    The child only calls into hnswlib and exits. Returns the child's pid, or 0 if it saved in-process."""
    if not hasattr(os, "fork") or not _fork_safe():
        index.save_index(str(path))
        return 0
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            _die_with_parent(parent)
            index.save_index(str(path))
            code = 0
        finally:
            os._exit(code)
    return pid


def _fork_safe() -> bool:
    """OpenBLAS shuts its thread pool down at fork; a BLAS call running on another thread then never returns.

    With one BLAS thread (the engine's default) there is no pool to shut down."""
    from threadpoolctl import threadpool_info

    return all(int(p.get("num_threads", 1)) <= 1 for p in threadpool_info() if p.get("internal_api") == "openblas")


def _die_with_parent(parent: int) -> None:
    """A child must not outlive a killed server: a restarted one may be writing the same staging directory."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _wait_child(pid: int) -> None:
    _, status = os.waitpid(pid, 0)  # releases the GIL while it waits
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        raise RuntimeError(f"saving the HNSW graph failed in child process {pid} (status {status})")
