"""Sparse vectors in-process, against a brute-force oracle.

Hypothesis drives random histories (upserts that omit the vector for some points, overwrites,
deletes, restarts) through the collection contract and checks every search against a plain-Python
oracle: exact scores (integer weights, so every summation order agrees), ties to the earlier write,
filters, and the IDF of `modifier: idf` recomputed from the live points. The three scoring paths
(the unindexed tail, the rebuilt posting lists, MaxScore) each get the same histories.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import index.sparse as sparse_mod
from index.collection import Collection
from index.contract import CollectionOptions, Query, SparseVec
from index.errors import InvalidVector
from index.sparse import SparseField
from index.sparse_index import Postings, score_exhaustive, score_maxscore, topk
from index.sparse_store import SparseFiles
from nestor_client.models import CollectionConfig, Filter

Vec = dict[int, float]
CONFIG = {"vectors": {"d": {"dim": 2, "index": {"type": "flat"}}}}
GROUP0 = Filter.model_validate({"must": [{"key": "g", "match": {"value": 0}}]})


def sv(vec: Vec) -> SparseVec:
    return SparseVec(np.array(list(vec), np.uint32), np.array(list(vec.values()), np.float32))


def empty_query(vec: Vec, k: int, flt: Filter | None = None) -> Query:
    return Query(vector=np.zeros(0, np.float32), using="s", sparse=sv(vec), limit=k, filter=flt, with_payload=False)


@dataclass
class Oracle:
    idf: bool
    docs: dict[int, tuple[int, Vec | None, int]] = field(default_factory=dict)  # id -> (label, vector, group)
    next_label: int = 0

    def upsert(self, batch: list[tuple[int, Vec | None]]) -> None:
        for pid, vec in batch:
            self.docs[pid] = (self.next_label, vec, pid % 3)
            self.next_label += 1

    def delete(self, ids: list[int]) -> None:
        for pid in ids:
            self.docs.pop(pid, None)

    def search(self, q: Vec, k: int, group: int | None) -> list[tuple[int, float]]:
        live = [(lab, pid, v) for pid, (lab, v, _) in self.docs.items() if v is not None]
        weights = dict(q)
        if self.idf:
            n = len(live)
            for t in q:
                df = sum(1 for _, _, v in live if t in v)
                weights[t] = q[t] * math.log((n - df + 0.5) / (df + 0.5) + 1.0)
        weights = {t: w for t, w in weights.items() if w != 0}
        scored = []
        for lab, pid, v in live:
            if group is not None and self.docs[pid][2] != group:
                continue
            shared = [t for t in weights if t in v]
            if shared:
                scored.append((-sum(weights[t] * v[t] for t in shared), lab, pid))
        scored.sort()
        return [(pid, -neg) for neg, _, pid in scored[:k]]


terms = st.integers(0, 12)
weights_int = st.integers(-3, 4).map(float)
vectors = st.dictionaries(terms, weights_int, min_size=1, max_size=6)
maybe_vectors = st.one_of(st.none(), vectors)
ids = st.integers(0, 25)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), st.lists(st.tuples(ids, maybe_vectors), min_size=1, max_size=8)),
        st.tuples(st.just("delete"), st.lists(ids, min_size=1, max_size=4)),
        st.tuples(st.just("search"), st.tuples(vectors, st.integers(1, 8), st.booleans())),
        st.tuples(st.just("reopen"), st.none()),
    ),
    min_size=1,
    max_size=14,
)
PATHS = {  # (_MIN_TAIL, _PRUNE_MIN): which scorer serves the searches
    "tail": (1 << 30, 1 << 30),
    "postings": (2, 1 << 30),
    "maxscore": (2, 0),
}


def _dedupe(batch: list[tuple[int, Vec | None]]) -> list[tuple[int, Vec | None]]:
    seen: dict[int, Vec | None] = {}
    for pid, v in batch:
        seen[pid] = v
    return list(seen.items())


def _check(coll: Collection, oracle: Oracle, q: Vec, k: int, filtered: bool, exact_scores: bool) -> None:
    got = coll.search([empty_query(q, k, GROUP0 if filtered else None)])[0]
    want = oracle.search(q, k, 0 if filtered else None)
    pairs = [(int(h.id), h.score) for h in got.hits]  # type: ignore[arg-type]
    if exact_scores:
        assert pairs == [(pid, pytest.approx(s, abs=1e-4)) for pid, s in want]
        return
    # IDF weights are irrational: equal up to rounding, and any near-tie may come in either order
    assert [s for _, s in pairs] == pytest.approx([s for _, s in want], abs=1e-4)
    full = dict(oracle.search(q, 10**6, 0 if filtered else None))
    for pid, s in pairs:
        assert full[pid] == pytest.approx(s, abs=1e-4)


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("idf", [False, True])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=ops, threshold=st.sampled_from([0, 5000]))
def test_sparse_matches_oracle(
    tmp_path_factory: pytest.TempPathFactory, path: str, idf: bool, history: list[Any], threshold: int
) -> None:
    min_tail, prune_min = PATHS[path]
    d = tmp_path_factory.mktemp("sparse") / "c"
    cfg = CollectionConfig.model_validate({**CONFIG, "sparse_vectors": {"s": {"modifier": "idf" if idf else None}}})
    options = CollectionOptions(save_idle_seconds=3600, save_max_seconds=3600, exact_filter_threshold=threshold)
    oracle = Oracle(idf)
    with mock.patch.object(sparse_mod, "_MIN_TAIL", min_tail), mock.patch.object(sparse_mod, "_PRUNE_MIN", prune_min):
        coll = Collection.create("c", d, cfg, options)
        try:
            for op, arg in history:
                if op == "upsert":
                    batch = _dedupe(arg)
                    pids = [p for p, _ in batch]
                    given_s = [None if v is None else sv(v) for _, v in batch]
                    coll.upsert(
                        pids, {"d": np.ones((len(pids), 2), np.float32), "s": given_s}, [{"g": p % 3} for p in pids]
                    )
                    oracle.upsert(batch)
                elif op == "delete":
                    coll.delete(list(arg))
                    oracle.delete(list(arg))
                elif op == "reopen":
                    coll.close()
                    coll = Collection.open("c", d, options)
                else:
                    q, k, filtered = arg
                    _check(coll, oracle, q, k, filtered, exact_scores=not idf)
            f = coll.fields["s"]
            assert isinstance(f, SparseField)
            live = [v for _, v, _ in oracle.docs.values() if v is not None]
            assert f.n_live == len(live)
            assert f.df == {t: c for t in range(13) if (c := sum(1 for v in live if t in v))}
        finally:
            coll.close()


@settings(max_examples=40, deadline=None)
@given(
    docs=st.lists(
        st.dictionaries(st.integers(0, 30), st.integers(0, 5).map(float), max_size=8), min_size=1, max_size=120
    ),
    query=st.dictionaries(terms, st.integers(1, 3).map(float), min_size=1, max_size=6),
    k=st.integers(1, 10),
    dead=st.sets(st.integers(0, 119)),
)
def test_maxscore_equals_exhaustive(docs: list[Vec], query: Vec, k: int, dead: set[int], tmp_path_factory: Any) -> None:
    """MaxScore returns exactly the exhaustive top k (scores and tie order), dead labels excluded."""
    store = SparseFiles(tmp_path_factory.mktemp("ms"), 0)
    try:
        rows = [sv(v) if v else SparseVec(np.zeros(0, np.uint32), np.zeros(0, np.float32)) for v in docs]
        rows = [SparseVec(r.indices[np.argsort(r.indices)], r.values[np.argsort(r.indices)]) for r in rows]
        store.append(
            np.concatenate([r.indices for r in rows]).astype(np.uint32),
            np.concatenate([r.values for r in rows]).astype(np.float32),
            np.array([len(r.indices) for r in rows], np.int64),
        )
        n = len(docs)
        alive = np.ones(n, bool)
        alive[[x for x in dead if x < n]] = False
        p = Postings.build(store.snapshot(), n, np.ones(n, bool))  # dead labels still in the lists: masked
        qt = np.array(sorted(query), np.uint32)
        qw = np.array([query[t] for t in sorted(query)], np.float64)
        slots, found = p.find(qt)
        slots, qw = slots[found], qw[found]
        none = (np.zeros(0, np.int64), np.zeros(0, np.float64))
        full = topk(*score_exhaustive(p, slots, qw, alive, n), k)
        pruned = score_maxscore(p, slots, qw, alive, n, k, none)
        if not len(slots):  # no query term in any posting list: nothing to prune, nothing found
            assert pruned is None and not len(full[0])
            return
        assert pruned is not None
        got = topk(*pruned, k)
        assert got[0].tolist() == full[0].tolist()
        assert got[1].tolist() == full[1].tolist()
    finally:
        store.close()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(50, 3000), k=st.integers(1, 20), q_len=st.integers(1, 6))
def test_maxscore_equals_exhaustive_on_zipfian_text(
    seed: int, n: int, k: int, q_len: int, tmp_path_factory: Any
) -> None:
    """Text-like postings (a few very common terms, a long tail) make MaxScore prune: still the same top k."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 12, n)
    idx_rows = [np.unique(np.minimum(rng.zipf(1.3, int(m)), 400)).astype(np.uint32) for m in lengths]
    val_rows = [rng.integers(1, 6, len(r)).astype(np.float32) for r in idx_rows]
    store = SparseFiles(tmp_path_factory.mktemp("zipf"), 0)
    try:
        store.append(np.concatenate(idx_rows), np.concatenate(val_rows), np.array([len(r) for r in idx_rows]))
        alive = rng.random(n) > 0.1
        p = Postings.build(store.snapshot(), n, np.ones(n, bool))
        qt = np.unique(np.minimum(rng.zipf(1.3, q_len), 400)).astype(np.uint32)
        qw = rng.integers(1, 4, len(qt)).astype(np.float64)
        slots, found = p.find(qt)
        slots, qw = slots[found], qw[found]
        if not len(slots):
            return
        full = topk(*score_exhaustive(p, slots, qw, alive, n), k)
        pruned = score_maxscore(p, slots, qw, alive, n, k, (np.zeros(0, np.int64), np.zeros(0, np.float64)))
        assert pruned is not None
        got = topk(*pruned, k)
        assert got[0].tolist() == full[0].tolist() and got[1].tolist() == full[1].tolist()
    finally:
        store.close()


def _coll(tmp_path: Path, modifier: str | None = None) -> Collection:
    cfg = CollectionConfig.model_validate({**CONFIG, "sparse_vectors": {"s": {"modifier": modifier}}})
    return Collection.create("c", tmp_path / "c", cfg, CollectionOptions(save_idle_seconds=3600))


def test_bad_sparse_vectors_write_nothing(tmp_path: Path) -> None:
    coll = _coll(tmp_path)
    try:
        coll.upsert([1], {"d": np.ones((1, 2), np.float32), "s": [sv({3: 1.0})]})
        bad = [
            SparseVec(np.array([1, 1], np.uint32), np.array([1, 2], np.float32)),
            SparseVec(np.array([1], np.uint32), np.array([1, 2], np.float32)),
            SparseVec(np.array([1], np.uint32), np.array([np.nan], np.float32)),
            SparseVec(np.array([1], np.uint32), np.array([np.inf], np.float32)),
        ]
        for b in bad:
            with pytest.raises(InvalidVector):  # the second point is bad: the first is not written either
                coll.upsert([2, 3], {"d": np.ones((2, 2), np.float32), "s": [sv({3: 5.0}), b]})
        assert coll.count == 1
        f = coll.fields["s"]
        assert isinstance(f, SparseField)
        assert f.store.n_docs == 1 and f.df == {3: 1}
        hits = coll.search([empty_query({3: 1.0}, 5)])[0].hits
        assert [(h.id, h.score) for h in hits] == [(1, 1.0)]
        with pytest.raises(InvalidVector):
            coll.search([empty_query({3: float("nan")}, 5)])
    finally:
        coll.close()


def test_failed_commit_rolls_back_the_sparse_rows(tmp_path: Path) -> None:
    """The SQLite commit fails after the sparse rows were appended: they are truncated, nothing changes."""
    coll = _coll(tmp_path, "idf")
    try:
        coll.upsert([1, 2], {"d": np.ones((2, 2), np.float32), "s": [sv({1: 1.0}), sv({1: 2.0, 2: 1.0})]})
        before = coll.search([empty_query({1: 1.0, 2: 1.0}, 5)])[0].hits
        with mock.patch.object(coll.points, "upsert", side_effect=OSError("disk full")), pytest.raises(OSError):
            coll.upsert([3], {"d": np.ones((1, 2), np.float32), "s": [sv({2: 9.0})]})
        f = coll.fields["s"]
        assert isinstance(f, SparseField)
        assert f.store.n_docs == 2 and (tmp_path / "c" / "vectors" / "s" / "sparse.ends").stat().st_size == 16
        assert coll.search([empty_query({1: 1.0, 2: 1.0}, 5)])[0].hits == before
        assert f.df == {1: 2, 2: 1}
    finally:
        coll.close()


def test_reopen_truncates_a_torn_append_and_rebuilds_the_same_index(tmp_path: Path) -> None:
    coll = _coll(tmp_path)  # integer weights, no IDF: every summation order gives the same scores
    rng = np.random.default_rng(0)
    vecs = [{int(t): float(rng.integers(1, 5)) for t in rng.choice(50, 5, replace=False)} for _ in range(300)]
    coll.upsert(list(range(300)), {"d": np.ones((300, 2), np.float32), "s": [sv(v) for v in vecs]})
    coll.delete(list(range(0, 300, 7)))
    coll.upsert([5], {"d": np.ones((1, 2), np.float32), "s": [sv({1: 3.0})]})
    queries = [{int(t): 1.0 for t in rng.choice(50, 3, replace=False)} for _ in range(10)]
    before = [[(h.id, h.score) for h in coll.search([empty_query(q, 10)])[0].hits] for q in queries]
    f = coll.fields["s"]
    assert isinstance(f, SparseField)
    df, n_live = dict(f.df), f.n_live
    coll.close()
    sdir = tmp_path / "c" / "vectors" / "s"
    for name, junk in (("sparse.ends", np.array([10**6], "<i8")), ("sparse.indices", np.array([7], "<u4"))):
        with open(sdir / name, "ab") as fh:  # a batch that was appended but never committed
            fh.write(junk.tobytes())
    coll = Collection.open("c", tmp_path / "c", CollectionOptions(save_idle_seconds=3600))
    try:
        f = coll.fields["s"]
        assert isinstance(f, SparseField)
        assert f.df == df and f.n_live == n_live
        assert (sdir / "sparse.ends").stat().st_size == 301 * 8
        after = [[(h.id, h.score) for h in coll.search([empty_query(q, 10)])[0].hits] for q in queries]
        assert after == before
        assert any(after)  # the queries do find points
    finally:
        coll.close()


def test_score_labels_and_with_vector(tmp_path: Path) -> None:
    coll = _coll(tmp_path)
    try:
        coll.upsert([1, 2, 3], {"d": np.ones((3, 2), np.float32), "s": [sv({4: 2.0, 1: 1.0}), None, sv({9: 1.0})]})
        f = coll.fields["s"]
        assert isinstance(f, SparseField)
        labels = np.array([coll.label_of(1), coll.label_of(3)], np.int64)
        assert f.score_labels(sv({4: 3.0, 9: 0.5}), labels).tolist() == [6.0, 0.5]
        got = coll.get([1, 2], with_vector=["s"])
        assert got[0].vectors == {"s": {"indices": [1, 4], "values": [1.0, 2.0]}}  # stored sorted by index
        assert got[1].vectors == {}  # point 2 has no sparse vector
        assert coll.info().vectors["s"].index.type == "inverted"
    finally:
        coll.close()


def test_the_indexer_folds_the_tail_in_once_writes_pause(tmp_path: Path) -> None:
    coll = _coll(tmp_path, "idf")
    try:
        rng = np.random.default_rng(1)
        vecs = [{int(t): float(rng.integers(1, 5)) for t in rng.choice(40, 4, replace=False)} for _ in range(200)]
        coll.upsert(list(range(200)), {"d": np.ones((200, 2), np.float32), "s": [sv(v) for v in vecs]})
        f = coll.fields["s"]
        assert isinstance(f, SparseField)
        assert f.postings.upto == 0 and f.tail_entries() == 800  # searchable at once, from the rows
        before = coll.search([empty_query({1: 1.0, 2: 1.0}, 10)])[0]
        deadline = time.monotonic() + 10
        while f.postings.upto < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f.postings.upto == 200 and f.tail_entries() == 0
        after = coll.search([empty_query({1: 1.0, 2: 1.0}, 10)])[0]
        assert [h.id for h in after.hits] == [h.id for h in before.hits]
        assert [h.score for h in after.hits] == pytest.approx([h.score for h in before.hits], rel=1e-6)
    finally:
        coll.close()


def test_searches_race_writes_and_rebuilds(tmp_path: Path) -> None:
    """Readers never fail or see a point twice while writes overwrite, delete and rebuild the postings."""
    import threading

    coll = _coll(tmp_path, "idf")
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                hits = coll.search([empty_query({1: 1.0, 2: 1.0, 3: 0.5}, 20)])[0].hits
                ids = [h.id for h in hits]
                assert len(ids) == len(set(ids))
                assert all(h.score > 0 for h in hits)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                errors.append(exc)
                return

    t = threading.Thread(target=reader)
    rng = np.random.default_rng(2)
    with mock.patch.object(sparse_mod, "_MIN_TAIL", 4):
        t.start()
        try:
            for b in range(40):
                ids = [int(x) for x in rng.choice(60, 5, replace=False)]
                vecs = [sv({int(rng.integers(1, 5)): 1.0, 10 + b % 7: 2.0}) for _ in ids]
                coll.upsert(ids, {"d": np.ones((5, 2), np.float32), "s": vecs})
                if b % 4 == 3:
                    coll.delete(ids[:2])
        finally:
            stop.set()
            t.join()
            coll.close()
    assert not errors, errors[0]


def test_idf_never_negative_between_a_writes_two_counts(tmp_path: Path) -> None:
    """A reader may see df raised before N (or N lowered before df): the IDF is clamped, never negative."""
    coll = _coll(tmp_path, "idf")
    try:
        coll.upsert([1, 2, 3], {"d": np.ones((3, 2), np.float32), "s": [sv({5: 1.0})] * 3})
        f = coll.fields["s"]
        assert isinstance(f, SparseField)
        f.n_live = 1  # as if a delete of two points had lowered N but not df yet
        _, w = f.query_weights(sv({5: 1.0}))
        assert w.tolist() == [pytest.approx(math.log(0.5 / 1.5 + 1))]
    finally:
        coll.close()
