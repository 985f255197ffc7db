"""Payload indexes under concurrent writes: what readers see while writers upsert, overwrite and delete.

Two writer threads own disjoint ids and keep changing them: batches of new points and overwrites whose
indexed fields (`tenant`, `cat`, `tags`) change, deletes by id, and deletes by filter. Two reader threads
run filtered searches (exact, ACORN and checked walks, by the filter's size) and counts meanwhile. Every
payload also carries unindexed copies of those fields (`tenant_u`, `cat_u`, `tags_u`), so each filter has
a twin that only the SQL scan can answer.

While the writers run, every hit must match the filter by the payload returned with it (and carry its
own id), and a count may never exceed the number of distinct ids ever written with a matching payload
(each writer records a payload before it sends it). Once they stop: for every filter, the indexed count,
the SQL scan of its twin and the oracle over what the writers had acknowledged agree; exact filtered
searches return the oracle's top 10, and graph searches only matching points.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from index.collection import Collection
from index.contract import CollectionOptions, PointIdT, Query
from nestor_client.models import Filter, SearchParams
from tests.unit.index.conftest import F32, Engine, unit, wait_indexed

DIM = 8
IDS = 800  # writer w owns the ids i with i % WRITERS == w
WRITERS, READERS = 2, 2
RUN_SECONDS = 2.5
TENANTS = [f"t{i}" for i in range(5)]
TAGS = ["red", "green", "blue", "grey"]

Payload = dict[str, Any]
Pred = Callable[[int, Payload], bool]


@pytest.fixture
def options() -> CollectionOptions:
    # small enough that mid-size filters walk the graph (ACORN) and broad ones check the walk
    return CollectionOptions(
        save_idle_seconds=3600, save_max_seconds=3600, exact_filter_threshold=40, filter_walk_fraction=0.3
    )


def _cond(key: str, **clause: Any) -> dict[str, Any]:
    return {"key": key, **clause}


def _twin(f: dict[str, Any]) -> dict[str, Any]:
    """The same filter on the unindexed copies of the keys."""
    if isinstance(f, dict):
        return {k: (_twin(v) if k != "key" else f"{v}_u") for k, v in f.items()}
    if isinstance(f, list):
        return [_twin(v) for v in f]
    return f


# (filter on indexed keys, the same condition in Python)
CASES: list[tuple[dict[str, Any], Pred]] = [
    ({"must": [_cond("cat", match={"value": 3})]}, lambda i, p: p["cat"] == 3),
    (
        {"must": [_cond("tenant", match={"any": ["t0", "t1"]}), _cond("cat", range={"lt": 5})]},
        lambda i, p: p["tenant"] in ("t0", "t1") and p["cat"] < 5,
    ),
    ({"must_not": [_cond("tenant", match={"value": "t2"})]}, lambda i, p: p["tenant"] != "t2"),
    (
        {"must": [_cond("tags", match={"any": ["red"]})], "must_not": [_cond("cat", match={"any": [1, 2]})]},
        lambda i, p: "red" in p["tags"] and p["cat"] not in (1, 2),
    ),
    (
        {"should": [_cond("tenant", match={"value": "t4"}), _cond("cat", range={"gte": 8})]},
        lambda i, p: p["tenant"] == "t4" or p["cat"] >= 8,
    ),
]


def _payload(r: random.Random, pid: int, w: int, version: int) -> Payload:
    tenant, cat = r.choice(TENANTS), r.randrange(10)
    tags = r.sample(TAGS, r.randrange(3))
    return {"pid": pid, "w": w, "v": version, "tenant": tenant, "cat": cat, "tags": tags}


def _with_twins(p: Payload) -> Payload:
    return {**p, "tenant_u": p["tenant"], "cat_u": p["cat"], "tags_u": p["tags"]}


@dataclass
class Shared:
    """What the writers wrote (ever, per filter) and acknowledged (now), and what the readers found."""

    ever: list[set[int]] = field(default_factory=lambda: [set() for _ in CASES])
    truth: dict[int, tuple[F32, Payload]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # hits whose returned payload does not match
    hits_checked: int = 0
    counts_checked: int = 0
    writes: int = 0
    strategies: set[str] = field(default_factory=set)

    def record(self, ids: list[int], payloads: list[Payload]) -> None:
        with self.lock:
            for (_, pred), ever in zip(CASES, self.ever, strict=True):
                ever.update(i for i, p in zip(ids, payloads, strict=True) if pred(i, p))


def _writer(coll: Collection, w: int, sh: Shared, stop: threading.Event) -> None:
    r = random.Random(w)
    rng = np.random.default_rng(w)
    mine = list(range(w, IDS, WRITERS))
    version = 0
    try:
        while not stop.is_set():
            version += 1
            op = r.random()
            if op < 0.7:
                ids = r.sample(mine, r.randrange(5, 40))
                vecs = unit(rng.normal(size=(len(ids), DIM)).astype(np.float32))
                pays = [_payload(r, i, w, version) for i in ids]
                sh.record(ids, pays)  # before the write: a reader may see it from now on
                coll.upsert(list[PointIdT](ids), vecs, [_with_twins(p) for p in pays])
                with sh.lock:
                    sh.truth.update({i: (v, p) for i, v, p in zip(ids, vecs, pays, strict=True)})
            elif op < 0.9:
                ids = r.sample(mine, r.randrange(1, 15))
                coll.delete(list[PointIdT](ids))
                with sh.lock:
                    for i in ids:
                        sh.truth.pop(i, None)
            else:
                cat = r.randrange(10)
                flt = {"must": [_cond("w", match={"value": w}), _cond("cat", match={"value": cat})]}
                coll.delete_where(Filter.model_validate(flt))
                with sh.lock:
                    for i in [i for i, (_, p) in sh.truth.items() if p["w"] == w and p["cat"] == cat]:
                        del sh.truth[i]
            sh.writes += 1
    except Exception as e:  # noqa: BLE001 - reported by the test
        sh.errors.append(f"writer {w}: {e!r}\n{traceback.format_exc()}")


def _reader(coll: Collection, seed: int, sh: Shared, stop: threading.Event) -> None:
    r = random.Random(100 + seed)
    rng = np.random.default_rng(100 + seed)
    try:
        while not stop.is_set():
            k = r.randrange(len(CASES))
            raw, pred = CASES[k]
            flt = Filter.model_validate(raw if r.random() < 0.75 else _twin(raw))
            q = unit(rng.normal(size=DIM).astype(np.float32))
            res = coll.search([Query(q, limit=10, filter=flt)])[0]
            sh.strategies.add(res.strategy)
            ids = [h.id for h in res.hits]
            if len(set(ids)) != len(ids):
                sh.errors.append(f"duplicate hits {ids} under {res.strategy}")
            for h in res.hits:
                p = h.payload
                with sh.lock:
                    ever = h.id in sh.ever[k]
                if not ever:
                    sh.errors.append(f"hit {h.id} was never written matching filter {k} ({res.strategy})")
                if p is None or p.get("pid") != h.id:
                    sh.errors.append(f"hit {h.id} came with the payload {p}")
                elif not pred(int(h.id), p):
                    sh.stale.append(f"hit {h.id} with payload {p} does not match filter {k} ({res.strategy})")
            sh.hits_checked += len(res.hits)
            n = coll.count_where(flt)
            with sh.lock:
                bound = len(sh.ever[k])  # read after the count: it only grows
            if n > bound:
                sh.errors.append(f"count {n} of filter {k} exceeds the {bound} ids ever written matching it")
            sh.counts_checked += 1
    except Exception as e:  # noqa: BLE001 - reported by the test
        sh.errors.append(f"reader {seed}: {e!r}\n{traceback.format_exc()}")


def _exact_top(sh: Shared, pred: Pred, q: F32, k: int) -> list[tuple[int, float]]:
    scored = [(i, float(v @ q)) for i, (v, p) in sh.truth.items() if pred(i, p)]
    return sorted(scored, key=lambda t: -t[1])[:k]


def _race(engine: Engine) -> tuple[Collection, Shared]:
    """Load the collection, run the writers and readers for RUN_SECONDS, stop them, wait for the index."""
    schema = {"tenant": "keyword", "cat": "integer", "tags": "keyword"}
    config = {"dim": DIM, "metric": "cosine", "index": {"type": "hnsw", "m": 8}, "payload_schema": schema}
    coll = engine.create("race", config)
    sh = Shared()
    r, rng = random.Random(7), np.random.default_rng(7)
    ids = list(range(IDS))
    vecs = unit(rng.normal(size=(IDS, DIM)).astype(np.float32))
    pays = [_payload(r, i, i % WRITERS, 0) for i in ids]
    sh.record(ids, pays)
    coll.upsert(list[PointIdT](ids), vecs, [_with_twins(p) for p in pays])
    sh.truth.update({i: (vecs[i], pays[i]) for i in ids})
    wait_indexed(coll)

    stop_writers, stop_readers = threading.Event(), threading.Event()
    writers = [threading.Thread(target=_writer, args=(coll, w, sh, stop_writers)) for w in range(WRITERS)]
    readers = [threading.Thread(target=_reader, args=(coll, s, sh, stop_readers)) for s in range(READERS)]
    for t in writers + readers:
        t.start()
    time.sleep(RUN_SECONDS)
    stop_writers.set()
    for t in writers:
        t.join(timeout=30)
    stop_readers.set()
    for t in readers:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in writers + readers)
    assert sh.writes > 20 and sh.counts_checked > 50 and sh.hits_checked > 500, sh
    wait_indexed(coll)
    return coll, sh


def test_readers_see_consistent_indexes_while_writers_change_them(engine: Engine) -> None:
    coll, sh = _race(engine)
    assert sh.errors == [], sh.errors[:10]
    bases = {s.partition("+")[0] for s in sh.strategies}
    # the race covered the graph walk and an exact plan (by the filter's size, or after a short walk)
    assert "hnsw_acorn" in bases and bases & {"exact_filtered", "exact_fallback"}, sh.strategies

    assert coll.count == len(sh.truth)
    q_rng = np.random.default_rng(11)
    for raw, pred in CASES:
        indexed, twin = Filter.model_validate(raw), Filter.model_validate(_twin(raw))
        want = sum(1 for i, (_, p) in sh.truth.items() if pred(i, p))
        assert coll.count_where(indexed) == coll.count_where(twin) == want, raw
        for _ in range(3):
            q = unit(q_rng.normal(size=DIM).astype(np.float32))
            top = _exact_top(sh, pred, q, 10)
            for flt in (indexed, twin):
                res = coll.search([Query(q, limit=10, filter=flt, params=SearchParams(exact=True))])[0]
                assert [h.id for h in res.hits] == [i for i, _ in top], (raw, res.strategy)
                np.testing.assert_allclose([h.score for h in res.hits], [s for _, s in top], atol=1e-5)
            res = coll.search([Query(q, limit=10, filter=indexed)])[0]
            assert "payload_scan" not in res.strategy
            assert len(res.hits) == len(top) and all(pred(int(h.id), sh.truth[int(h.id)][1]) for h in res.hits)

    # Recall of the graph plans, once a compaction has dropped the dead nodes. Before it, the graph holds 3-4x
    # as many deleted nodes as live ones, and an ACORN walk through them sometimes finds only 7 of the top 10
    # (a known weakness, issue 14): the checks above hold on the churned graph, this one on a compacted graph.
    assert coll.optimize()
    st = coll.optimizer.wait(60)
    assert st.state == "idle" and st.last_error is None, st.last_error
    wait_indexed(coll)
    for raw, pred in CASES:
        indexed = Filter.model_validate(raw)
        for _ in range(3):
            q = unit(q_rng.normal(size=DIM).astype(np.float32))
            top = _exact_top(sh, pred, q, 10)
            res = coll.search([Query(q, limit=10, filter=indexed)])[0]
            assert len({h.id for h in res.hits} & {i for i, _ in top}) >= 8, (raw, res.strategy)


def test_every_hit_comes_with_a_payload_that_matches_the_filter(engine: Engine) -> None:
    _, sh = _race(engine)
    assert sh.stale == [], sh.stale[:5]
