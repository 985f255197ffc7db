"""Compaction keeps every live point and reclaims the dead ones (index/compaction.py).

Through the engine contract: after overwrites and deletes, a compaction must keep every live id, its
payload and its vectors bit for bit, return the same top-k under exact search, and keep recall under
HNSW; the dead rows, tombstones and token slices go, and the collection reopens the same after a
restart. Searches and writes running during a compaction never miss an acknowledged point.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.compaction import MARKER, staging_dirs
from index.contract import CollectionOptions, Query
from index.optimizer import dead_share
from nestor_client.models import Filter, SearchParams
from tests.unit.index.conftest import QUIET, Engine, rows, until, wait_indexed

DIM = 16
HNSW = {"dim": DIM, "metric": "cosine", "index": {"type": "hnsw", "m": 8, "ef_construction": 64}}
NAMED = {
    "vectors": {
        "a": {"dim": DIM, "metric": "l2", "index": {"type": "hnsw", "m": 8}},
        "b": {"dim": 8, "metric": "dot", "index": {"type": "flat"}},
        "t": {"dim": 8, "metric": "cosine", "multivector": {"type": "maxsim"}},
    }
}


@pytest.fixture
def options() -> CollectionOptions:
    return replace(QUIET, optimizer_interval=0.0)  # compactions only when a test asks


def _churn(coll: Any, rng: np.random.Generator, n: int) -> dict[int, tuple[np.ndarray, dict[str, Any]]]:
    """Load n points, overwrite half, delete a fifth; returns the live points {id: (vector, payload)}."""
    data = rows(rng, n, DIM)
    live: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}
    for s in range(0, n, 500):
        ids = list(range(s, min(n, s + 500)))
        pays = [{"k": i % 7, "s": f"p{i}"} for i in ids]
        coll.upsert(ids, data[ids], pays)
    over = rng.choice(n, n // 2, replace=False).tolist()
    newv = rows(rng, len(over), DIM)
    coll.upsert(over, newv, [{"k": -1, "v": 2} for _ in over])
    gone = rng.choice(n, n // 5, replace=False).tolist()
    coll.delete(gone)
    for i in range(n):
        live[i] = (data[i], {"k": i % 7, "s": f"p{i}"})
    for i, v in zip(over, newv, strict=True):
        live[i] = (v, {"k": -1, "v": 2})
    for i in gone:
        live.pop(i, None)
    return live


def _compact(coll: Any, timeout: float = 60.0) -> dict[str, Any]:
    before = coll.optimizer.status().last
    assert coll.optimize()
    st = coll.optimizer.wait(timeout)
    assert st.state == "idle" and st.last_error is None, st.last_error
    assert st.last is not None and st.last != before
    return st.last


def _stored(coll: Any, ids: list[int]) -> dict[Any, tuple[list[float], dict[str, Any] | None]]:
    got = coll.get(ids, with_payload=True, with_vector=True)
    return {h.id: (h.vectors[""], h.payload) for h in got}


def test_compaction_keeps_live_points_bit_identical(engine: Engine) -> None:
    rng = np.random.default_rng(1)
    coll = engine.create("c", HNSW)
    live = _churn(coll, rng, 3000)
    wait_indexed(coll)
    ids = sorted(live)
    before = _stored(coll, ids)
    queries = rows(rng, 20, DIM)
    exact = [coll.search([Query(q, limit=10, params=SearchParams(exact=True))])[0] for q in queries]
    usage = coll.info().usage
    assert usage is not None and usage.dead_labels == 4500 - len(live)
    assert usage.vectors[""]["rows"].disk_dead == usage.dead_labels * 4 * DIM
    share, n = dead_share(coll)
    assert n == 4500 and share > 0.2
    disk_before = usage.vectors[""]["rows"].disk_dead + usage.vectors[""]["rows"].disk_live

    result = _compact(coll)

    assert result["points"] == len(live)
    assert coll.count == len(live) and coll.labels.n == len(live)  # relabelled densely
    after = _stored(coll, ids)
    assert after == before  # ids, payloads, vectors (float32 -> list: bit for bit)
    got = np.asarray([after[i][0] for i in ids], np.float32)
    want = np.asarray([before[i][0] for i in ids], np.float32)
    assert got.tobytes() == want.tobytes()
    for q, ex in zip(queries, exact, strict=True):
        again = coll.search([Query(q, limit=10, params=SearchParams(exact=True))])[0]
        assert [h.id for h in again.hits] == [h.id for h in ex.hits]
        assert [h.score for h in again.hits] == pytest.approx([h.score for h in ex.hits], abs=1e-6)
    usage = coll.info().usage
    assert usage is not None and usage.dead_labels == 0
    rows_use = usage.vectors[""]["rows"]
    assert rows_use.disk_dead == 0 and rows_use.disk_live == len(live) * 4 * DIM < disk_before
    assert usage.vectors[""]["index"].disk_dead == 0
    assert coll.info().seq == result["seq_before"]  # no write happened: the sequence goes on unchanged
    new_dir, old_dir = staging_dirs(coll.dir)
    assert not new_dir.exists() and not old_dir.exists() and not (coll.dir / MARKER).exists()

    # recall under HNSW against the exact answer, and the same after a restart
    wait_indexed(coll)
    hits = 0
    for q, ex in zip(queries, exact, strict=True):
        ann = coll.search([Query(q, limit=10)])[0]
        hits += len({h.id for h in ann.hits} & {h.id for h in ex.hits})
    assert hits / (10 * len(queries)) >= 0.9
    engine.restart()
    coll = engine.get("c")
    assert coll.count == len(live) and _stored(coll, ids) == before
    assert coll.count_where(None) == len(live)


def test_named_vectors_tokens_and_omitted_vectors(engine: Engine) -> None:
    rng = np.random.default_rng(2)
    coll = engine.create("n", NAMED)
    n = 400
    a, b = rows(rng, n, DIM), rows(rng, n, 8)
    toks = [rows(rng, 1 + i % 4, 8) for i in range(n)]
    vecs: dict[str, Any] = {
        "a": a,
        "b": [b[i] if i % 3 else None for i in range(n)],  # every third point omits "b"
        "t": toks,
    }
    coll.upsert(list(range(n)), vecs, [{"i": i} for i in range(n)])
    coll.delete(list(range(0, n, 2)))
    coll.upsert([1, 3], {"a": a[[5, 7]], "t": [toks[5], toks[7]]}, None)  # overwrite, omitting "b"
    before = {h.id: (h.vectors, h.payload) for h in coll.get(list(range(n)), with_vector=True)}
    usage = coll.info().usage
    assert usage is not None and usage.vectors["t"]["tokens"].ram_dead > 0
    _compact(coll)
    after = {h.id: (h.vectors, h.payload) for h in coll.get(list(range(n)), with_vector=True)}
    assert after == before
    usage = coll.info().usage
    assert usage is not None and usage.vectors["t"]["tokens"].ram_dead == 0
    assert usage.vectors["b"]["rows"].disk_dead == 0 or usage.vectors["b"]["rows"].disk_live > 0
    q = rows(rng, 1, 8)[0]
    res = coll.search([Query(q, limit=5, using="b")])[0]
    assert all(h.id % 3 and h.id not in (1, 3) for h in res.hits)  # omitted vectors stay omitted


def test_searches_and_writes_during_compaction(engine: Engine) -> None:
    """A writer keeps upserting and deleting while searches check that every acknowledged point is
    found by its own vector, and no deleted one comes back; then the result is checked whole."""
    rng = np.random.default_rng(3)
    coll = engine.create("w", {"dim": DIM, "metric": "l2", "index": {"type": "hnsw", "m": 8}})
    live = _churn(coll, rng, 3000)
    wait_indexed(coll)
    stop = threading.Event()
    errors: list[str] = []
    acked: dict[int, np.ndarray] = {i: v for i, (v, _) in live.items()}
    deleted: set[int] = set()
    lock = threading.Lock()

    def writer() -> None:
        nid = 10_000
        while not stop.is_set():
            # Each write and its bookkeeping under `lock`: a reader that searched while the write ran then
            # sees the point changed and does not count a miss. (Bookkeeping after the write let a reader
            # check a just-deleted point as still acknowledged.) Searches still run during the writes.
            v = rows(rng, 4, DIM)
            ids = list(range(nid, nid + 4))
            with lock:
                coll.upsert(ids, v, None)
                acked.update(zip(ids, v, strict=True))
            v2 = rows(rng, 1, DIM)
            with lock:
                again = int(rng.choice(list(acked)))  # an overwrite: readers may race the row's move
                coll.upsert([again], v2, [{"o": 1}])
                acked[again] = v2[0]
            victim = ids[0] - 40
            with lock:
                if victim in acked:
                    coll.delete([victim])
                    acked.pop(victim)
                    deleted.add(victim)
            nid += 4
            time.sleep(0.002)

    def searcher() -> None:
        r = np.random.default_rng(4)
        while not stop.is_set():
            with lock:
                pid = int(r.choice(list(acked)))
                v = acked[pid]
            res = coll.search([Query(v, limit=1, params=SearchParams(exact=True))])[0]
            if not res.hits or res.hits[0].id != pid:
                with lock:
                    if acked.get(pid) is v:  # not deleted nor overwritten meanwhile
                        errors.append(f"missed {pid}: {res.hits[:1]}")
            got = coll.get([pid])
            with lock:
                if not got and pid in acked:
                    errors.append(f"get missed {pid}")

    threads = [threading.Thread(target=writer), threading.Thread(target=searcher)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        _compact(coll)
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    with lock:
        want = set(acked)
    have = {h.id for h in coll.get(sorted(want | deleted))}
    assert have == want
    assert coll.count == len(want)
    for pid in list(want)[:200]:
        assert np.array_equal(np.asarray(coll.get([pid], with_vector=True)[0].vectors[""], np.float32), acked[pid])


def test_orphans_are_reclaimed_at_open(engine: Engine, tmp_path: Path) -> None:
    coll = engine.create("o", HNSW)
    coll.upsert([1, 2], rows(np.random.default_rng(5), 2, DIM), None)
    new_dir, old_dir = staging_dirs(coll.dir)
    engine.close()
    new_dir.mkdir()
    (new_dir / "junk").write_bytes(b"x")  # a staging directory without its marker: an interrupted build
    engine.restart()
    assert not new_dir.exists()
    assert engine.get("o").count == 2


def test_optimize_bad_states(engine: Engine) -> None:
    coll = engine.create("b", HNSW)
    coll.upsert(list(range(10)), rows(np.random.default_rng(6), 10, DIM), None)
    coll.delete([1, 2])
    _compact(coll)
    assert coll.count == 8
    st = coll.info().optimizer
    assert st is not None and st.last is not None and st.last["points"] == 8


def test_background_trigger(tmp_path: Path) -> None:
    opts = replace(QUIET, optimizer_interval=0.05, vacuum_threshold=0.3, vacuum_min_points=100)
    eng = Engine(tmp_path / "bg", opts)
    try:
        coll = eng.create("g", HNSW)
        coll.upsert(list(range(200)), rows(np.random.default_rng(7), 200, DIM), None)
        coll.delete(list(range(50)))  # 25 %: below the threshold
        time.sleep(0.3)
        assert coll.optimizer.status().last is None and coll.labels.n == 200
        coll.delete(list(range(50, 80)))  # 40 %
        until(lambda: coll.optimizer.status().last is not None, 20, "the background compaction")
        assert coll.labels.n == 120
        st = coll.optimizer.status()
        assert st.last is not None and st.last["reason"].startswith("dead labels")
        coll2 = eng.create("g2", {**HNSW, "optimizer": {"enabled": False}})
        coll2.upsert(list(range(200)), rows(np.random.default_rng(8), 200, DIM), None)
        coll2.delete(list(range(150)))
        time.sleep(0.3)
        assert coll2.labels.n == 200  # its config turned the trigger off
    finally:
        eng.close()


def test_payload_indexes_filters_and_scroll_after_compaction(engine: Engine) -> None:
    rng = np.random.default_rng(9)
    cfg = {**HNSW, "payload_schema": {"k": "integer", "s": "keyword"}}
    coll = engine.create("f", cfg)
    live = _churn(coll, rng, 2000)
    flt = Filter.model_validate({"must": [{"key": "k", "range": {"gte": 2, "lte": 4}}]})
    kw = Filter.model_validate({"must": [{"key": "s", "match": {"any": ["p1", "p2", "p3", "p10"]}}]})
    q = rows(rng, 1, DIM)[0]

    def snapshot() -> tuple[Any, ...]:
        page, nxt = coll.scroll(flt, limit=50, offset=100)
        exact = coll.search([Query(q, limit=20, filter=flt, params=SearchParams(exact=True))])[0]
        return (
            coll.count_where(flt),
            coll.count_where(kw),
            [h.id for h in page],
            nxt,
            [h.id for h in exact.hits],
            len(coll.labels_where(kw)),
        )

    before = snapshot()
    assert before[0] == sum(1 for _, p in live.values() if 2 <= p["k"] <= 4)
    _compact(coll)
    assert coll.generation == 1
    assert snapshot() == before
    assert coll.payload.info(coll.config.payload_schema)["k"].state == "ready"


@pytest.mark.parametrize(
    "config",
    [
        {
            "dim": DIM,
            "metric": "l2",
            "index": {"type": "hnsw", "m": 8},
            "quantize": {"type": "int8"},
            "training": {"threshold": 64},
        },
        {"dim": DIM, "metric": "dot", "index": {"type": "ivf_pq", "nlist": 8, "m": 4, "train_threshold": 256}},
        {
            "vectors": {
                "t": {
                    "dim": 8,
                    "metric": "cosine",
                    "multivector": {"type": "muvera", "token_dtype": "int8", "d_proj": 8},
                },
                "u": {"dim": 8, "metric": "cosine", "multivector": {"type": "maxsim", "token_dtype": "float16"}},
            }
        },
    ],
    ids=["hnsw-int8", "ivf-pq", "muvera-int8-tokens"],
)
def test_other_indexes_and_token_types(engine: Engine, config: dict[str, Any]) -> None:
    rng = np.random.default_rng(10)
    coll = engine.create("x", config)
    n = 600
    if "vectors" in config:
        toks = [rows(rng, 1 + i % 5, 8) for i in range(n)]
        vecs: Any = {"t": toks, "u": toks}
    else:
        vecs = rows(rng, n, DIM)
    coll.upsert(list(range(n)), vecs, [{"i": i} for i in range(n)])
    coll.delete(list(range(0, n, 3)))
    wait_indexed(coll, 60)
    ids = list(range(n))
    before = {h.id: (h.vectors, h.payload) for h in coll.get(ids, with_vector=True)}
    _compact(coll)
    wait_indexed(coll, 60)
    after = {h.id: (h.vectors, h.payload) for h in coll.get(ids, with_vector=True)}
    assert after == before  # the stored values, tokens too, exactly as they were
    assert coll.labels.n == coll.count == n - len(range(0, n, 3))
    using = "t" if "vectors" in config else None
    q = toks[1] if "vectors" in config else vecs[1]
    res = coll.search([Query(q, limit=1, using=using)])[0]
    assert res.hits[0].id == 1


def test_empty_and_emptied_collections(engine: Engine) -> None:
    coll = engine.create("e", HNSW)
    _compact(coll)
    assert coll.count == 0 and coll.labels.n == 0
    coll.upsert([1, 2, 3], rows(np.random.default_rng(11), 3, DIM), None)
    coll.delete([1, 2, 3])
    _compact(coll)
    assert coll.count == 0 and coll.labels.n == 0
    coll.upsert([4], rows(np.random.default_rng(12), 1, DIM), [{"a": 1}])  # and it takes writes again
    assert [h.payload for h in coll.get([4])] == [{"a": 1}]
    engine.restart()
    assert engine.get("e").count == 1


def test_progress_is_reported(engine: Engine) -> None:
    coll = engine.create("p", HNSW)
    coll.upsert(list(range(3000)), rows(np.random.default_rng(13), 3000, DIM), None)
    opt = coll.optimizer
    seen: list[tuple[str, float | None]] = []
    report = opt._report

    def spy(phase: str, done: int, total: int) -> None:
        report(phase, done, total)
        st = opt.status()  # what GET /collections/{name} shows at this moment
        assert st.state == "running" and st.phase == phase
        seen.append((phase, st.progress))

    opt._report = spy  # type: ignore[method-assign]
    _compact(coll)
    phases = [p for p, _ in seen]
    assert phases[0] == "copying" and phases[-1] == "swapping"
    assert {"copying", "indexing", "catching up", "swapping"} <= set(phases)
    copying = [x for p, x in seen if p == "copying"]
    assert copying == sorted(copying) and copying[-1] == 1.0  # it moves forward, to the end
    assert opt.status().phase is None and opt.status().state == "idle"


def test_ram_cap_moves_vectors_to_memory_maps(tmp_path: Path) -> None:
    """Past `ram_cap`, the in-RAM vector copies are memory-mapped; the info says so, and every read and
    write goes on the same, also after a restart and a compaction."""
    opts = replace(QUIET, ram_cap=20_000, optimizer_interval=0.05, vacuum_min_points=10**9)
    eng = Engine(tmp_path / "cap", opts)
    try:
        rng = np.random.default_rng(14)
        coll = eng.create("m", {"dim": DIM, "metric": "l2", "index": {"type": "hnsw", "m": 8}})
        data = rows(rng, 600, DIM)  # 38 KB of float32 rows: past the cap
        coll.upsert(list(range(600)), data, None)
        until(lambda: coll.info().vectors[""].placement["vectors"].endswith("over the RAM cap)"), 10, "the cap")
        info = coll.info()
        assert info.vectors[""].memory["vectors"].ram == 0 and coll.fields[""].vectors.on_disk
        q = data[17]
        assert coll.search([Query(q, limit=1, params=SearchParams(exact=True))])[0].hits[0].id == 17
        more = rows(rng, 5, DIM)
        coll.upsert([1000, 1001, 1002, 1003, 1004], more, None)  # appends go on through the map
        got = coll.get([1003], with_vector=True)[0].vectors[""]
        assert np.asarray(got, np.float32).tobytes() == more[3].tobytes()
        eng.restart()
        coll = eng.get("m")
        assert coll.fields[""].vectors.on_disk  # applied at open
        coll.delete(list(range(300)))
        _compact(coll)
        assert coll.fields[""].vectors.on_disk and coll.count == 305
        got = coll.get([599], with_vector=True)[0].vectors[""]
        assert np.asarray(got, np.float32).tobytes() == data[599].tobytes()
    finally:
        eng.close()
    small = Engine(tmp_path / "small", replace(QUIET, ram_cap=10**9))
    try:
        c2 = small.create("s", HNSW)
        c2.upsert([1], rows(np.random.default_rng(15), 1, DIM), None)
        assert not c2.fields[""].vectors.on_disk and c2.info().placement["vectors"] == "RAM, and disk"
    finally:
        small.close()


def test_sparse_vectors_survive_compaction_exactly(engine: Engine) -> None:
    """A sparse field's rows are copied bit for bit, its document frequencies recounted, its search unchanged."""
    from index.contract import SparseVec

    rng = np.random.default_rng(9)
    coll = engine.create("sp", {"vectors": {"d": {"dim": 8, "index": {"type": "flat"}}}, "sparse_vectors": {"s": {}}})
    n = 300

    def sparse(i: int) -> SparseVec | None:
        if i % 5 == 0:
            return None  # some points omit the sparse vector
        idx = np.unique(rng.integers(0, 50, size=1 + i % 7)).astype(np.uint32)
        return SparseVec(idx, rng.random(len(idx)).astype(np.float32) + 0.1)

    coll.upsert(list(range(n)), {"d": rows(rng, n, 8), "s": [sparse(i) for i in range(n)]}, None)
    coll.delete(list(range(0, n, 3)))
    coll.upsert([1, 2], {"d": rows(rng, 2, 8), "s": [sparse(11), sparse(12)]}, None)
    q = SparseVec(np.arange(0, 50, 3, dtype=np.uint32), np.linspace(1, 2, 17).astype(np.float32))
    sq = Query(np.zeros(0, np.float32), limit=20, using="s", sparse=q)
    before_hits = coll.search([sq])[0].hits
    before = {h.id: h.vectors for h in coll.get(list(range(n)), with_vector=True)}
    assert len(before_hits) == 20
    _compact(coll)
    assert {h.id: h.vectors for h in coll.get(list(range(n)), with_vector=True)} == before
    after_hits = coll.search([sq])[0].hits
    # the same ranking; a score may differ in its last bit (postings rebuilt: another summation order)
    assert [h.id for h in after_hits] == [h.id for h in before_hits]
    assert np.allclose([h.score for h in after_hits], [h.score for h in before_hits], rtol=1e-6, atol=0)
