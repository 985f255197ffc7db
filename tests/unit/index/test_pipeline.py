"""The query pipeline in the engine: nested prefetch under filters at each level against numpy oracles,
rescoring against an exact search restricted to the candidates, and bad trees refused before anything runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from index.collection import Collection
from index.contract import Query, QueryResult
from index.errors import DimensionMismatch, InvalidRequest, InvalidVector, LimitExceeded, NestorError
from index.pipeline import Fusion, PipelineLimits, Stage, check, run
from nestor_client.models import Filter, HasIdCondition, SearchParams
from tests.unit.index.conftest import Engine, rows, top_cosine, top_l2

N = 400


@pytest.fixture
def coll(engine: Engine) -> Collection:
    c = engine.create("p", {"vectors": {"a": {"dim": 8}, "b": {"dim": 6, "metric": "l2"}}})
    rng = np.random.default_rng(1)
    a, b = rows(rng, N, 8), rows(rng, N, 6)
    c.upsert(list(range(N)), {"a": a, "b": b}, [{"g": i % 3, "i": i} for i in range(N)])
    c.test_data = {"a": a, "b": b}  # type: ignore[attr-defined]
    return c


def _flt(**match: Any) -> Filter:
    conds: list[dict[str, Any]] = []
    for key, v in match.items():
        conds.append({"key": key, "range": v} if isinstance(v, dict) else {"key": key, "match": {"value": v}})
    return Filter.model_validate({"must": conds})


def test_nested_prefetch_applies_every_filter_above_and_each_limit(coll: Collection) -> None:
    a, b = coll.test_data["a"], coll.test_data["b"]  # type: ignore[attr-defined]
    rng = np.random.default_rng(2)
    qa, qb = rows(rng, 1, 8)[0], rows(rng, 1, 6)[0]
    leaf = Stage(qa, using="a", filter=_flt(i={"lt": 300}), params=SearchParams(exact=True), limit=50)
    middle = Stage(qb, using="b", filter=_flt(g=1), limit=20, prefetch=[leaf])
    root = Stage(qa, using="a", filter=_flt(i={"gte": 30}), limit=5, prefetch=[middle])
    check(coll, root)
    hits, report = run(coll, root, with_payload=True)

    # the oracle: the leaf sees all three filters; each level keeps its own limit of the one below
    allowed = [i for i in range(N) if 30 <= i < 300 and i % 3 == 1]
    leaf_top = top_cosine({i: a[i] for i in allowed}, qa, 50)
    middle_top = top_l2({i: b[i] for i, _ in leaf_top}, qb, 20)
    want = top_cosine({i: a[i] for i, _ in middle_top}, qa, 5)
    assert [h.id for h in hits] == [i for i, _ in want]
    assert [h.score for h in hits] == pytest.approx([s for _, s in want], abs=1e-5)
    assert all(h.payload is not None and h.payload["g"] == 1 for h in hits)

    assert (report.kind, report.using, report.candidates_in, report.candidates_out) == ("rescore", "a", 20, 5)
    mid = report.stages[0]
    assert (mid.kind, mid.using, mid.limit, mid.candidates_in, mid.candidates_out) == ("rescore", "b", 20, 50, 20)
    low = mid.stages[0]
    assert (low.kind, low.strategy, low.candidates_out, low.stages) == ("search", "exact_filtered+payload_scan", 50, [])


def test_rescore_equals_an_exact_search_restricted_to_the_candidates(coll: Collection) -> None:
    rng = np.random.default_rng(3)
    qa, qb = rows(rng, 1, 8)[0], rows(rng, 1, 6)[0]
    pre = [Stage(qb, using="b", limit=40), Stage(qa, using="a", limit=40, filter=_flt(g=2))]
    root = Stage(qb, using="b", limit=15, prefetch=pre)
    check(coll, root)
    hits, report = run(coll, root, offset=3, with_payload=False)
    cand: list[Any] = []
    for p in pre:
        q = Query(p.query, limit=p.limit, filter=p.filter, using=p.using, with_payload=False)  # type: ignore[arg-type]
        cand += [h.id for h in coll.search([q])[0].hits]
    assert report.candidates_in == 80 and len(set(cand)) < 80  # the two lists overlap
    restricted = Query(
        qb,
        limit=18,
        filter=Filter(must=[HasIdCondition(has_id=sorted(set(cand)))]),
        params=SearchParams(exact=True),
        using="b",
    )
    exact = coll.search([restricted])[0].hits[3:]
    assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in exact]
    assert len(hits) == 15


def test_fusion_of_a_cosine_and_an_l2_list(coll: Collection) -> None:
    rng = np.random.default_rng(4)
    qa, qb = rows(rng, 1, 8)[0], rows(rng, 1, 6)[0]
    pre = [Stage(qa, using="a", limit=8), Stage(qb, using="b", limit=8)]
    lists = [[(h.id, h.score) for h in coll.search([Query(p.query, limit=8, using=p.using)])[0].hits] for p in pre]  # type: ignore[arg-type]
    root = Stage(Fusion("dbsf"), limit=6, prefetch=pre)
    check(coll, root)
    hits, report = run(coll, root, with_payload=False)
    # by hand: each list normalised by mean +- 3 sample std, the L2 distances negated first
    acc: dict[Any, float] = {}
    for lst, sign in zip(lists, (1.0, -1.0), strict=True):
        s = np.array([sc for _, sc in lst]) * sign
        lo, hi = s.mean() - 3 * s.std(ddof=1), s.mean() + 3 * s.std(ddof=1)
        for (pid, _), v in zip(lst, s, strict=True):
            acc[pid] = acc.get(pid, 0.0) + (v - lo) / (hi - lo)
    want = sorted(acc.items(), key=lambda kv: -kv[1])[:6]
    assert [h.id for h in hits] == [pid for pid, _ in want]
    assert [h.score for h in hits] == pytest.approx([s for _, s in want], abs=1e-5)
    assert report.kind == "fusion" and report.strategy == "dbsf" and len(report.stages) == 2


class Counting:
    """A collection that counts the searches run through it."""

    def __init__(self, inner: Collection) -> None:
        self.inner = inner
        self.searches = 0

    def search(self, queries: list[Query], *, partial: bool = False) -> list[QueryResult]:
        self.searches += 1
        return self.inner.search(queries, partial=partial)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _bad_trees() -> list[tuple[str, Stage, type[NestorError]]]:
    v8, v6 = np.ones(8, np.float32), np.ones(6, np.float32)
    ok = Stage(v8, using="a", limit=5)

    def deep(n: int) -> Stage:
        st = Stage(v8, using="a", limit=5)
        for _ in range(n):
            st = Stage(v8, using="a", limit=5, prefetch=[st])
        return st

    return [
        ("unknown vector", Stage(v8, using="a", prefetch=[Stage(v8, using="nope")]), InvalidRequest),
        ("fusion without prefetch", Stage(Fusion("rrf"), prefetch=[ok, Stage(Fusion("dbsf"))]), InvalidRequest),
        (
            "wrong dimension, deep down",
            Stage(Fusion("rrf"), prefetch=[ok, deep(1), Stage(v6, using="a")]),
            DimensionMismatch,
        ),
        ("multivector query on a dense vector", Stage(np.ones((2, 8), np.float32), using="a"), InvalidVector),
        ("NaN", Stage(np.full(8, np.nan, np.float32), using="a"), InvalidVector),
        ("empty", Stage(np.zeros(0, np.float32), using="a"), InvalidVector),
        ("too deep", deep(3), LimitExceeded),
        ("too many candidates", Stage(Fusion("rrf"), prefetch=[Stage(v8, using="a", limit=900)] * 2), LimitExceeded),
        ("one limit too large", Stage(v8, using="a", limit=2000), LimitExceeded),
        ("two prefetches, no query", Stage(None, prefetch=[ok, ok]), InvalidRequest),
        ("rrf weights", Stage(Fusion("rrf", 2, (1.0,)), prefetch=[ok, ok]), InvalidRequest),
        ("params on a rescore", Stage(v8, using="a", params=SearchParams(ef=4), prefetch=[ok]), InvalidRequest),
        ("no such point", Stage(12345, using="a"), InvalidRequest),
    ]


@pytest.mark.parametrize("case", range(len(_bad_trees())))
def test_bad_trees_are_refused_before_anything_runs(coll: Collection, case: int) -> None:
    what, tree, error = _bad_trees()[case]
    counting = Counting(coll)
    with pytest.raises(error) as err:
        check(counting, tree, limits=PipelineLimits(max_depth=2, max_candidates=1000, max_limit=1000))  # type: ignore[arg-type]
    assert 400 <= err.value.status < 500, what
    assert counting.searches == 0, what


def test_query_by_point_id_leaves_the_point_out(coll: Collection) -> None:
    a = coll.test_data["a"]  # type: ignore[attr-defined]
    root = Stage(7, using="a", limit=5, params=SearchParams(exact=True))
    check(coll, root)
    hits, _ = run(coll, root, with_payload=False)
    want = top_cosine({i: a[i] for i in range(N) if i != 7}, a[7], 5)
    assert [h.id for h in hits] == [i for i, _ in want]


def test_candidates_and_rescore_on_a_compressed_vector_run_as_one_search(engine: Engine) -> None:
    """A rescore over `rescore: false` candidates of the same vector and query is the vector's own search
    (oversampling = the leaf's limit / k): the same hits as the tree run step by step, in one call."""
    from tests.unit.index.conftest import wait_indexed

    c = engine.create("q8", {"dim": 16, "quantize": {"type": "int8"}, "training": {"threshold": 500}})
    rng = np.random.default_rng(7)
    c.upsert(list(range(1500)), rows(rng, 1500, 16), None)
    wait_indexed(c)
    cand = SearchParams(rescore=False, ef=200)
    for q in rows(rng, 5, 16):
        fused_root = Stage(q, limit=10, prefetch=[Stage(q, params=cand, limit=40)])
        # a threshold no cosine score is below keeps the same candidates but is not fused: the step-by-step tree
        plain_root = Stage(q, limit=10, prefetch=[Stage(q, params=cand, limit=40, score_threshold=-2.0)])
        for root in (fused_root, plain_root):
            check(c, root)
        fused, rep = run(c, fused_root, with_payload=False)
        plain, rep_plain = run(c, plain_root, with_payload=False)
        assert rep.strategy is not None and rep.strategy.endswith("(candidates and rescore in one search)")
        assert rep.candidates_in == 40 and rep.stages[0].strategy == "fused into the rescore"
        assert rep_plain.stages[0].kind == "search" and rep_plain.stages[0].candidates_out == 40
        # the fused report (built when first read) says what the step-by-step one does, but the leaf's count
        d, d_plain = rep.as_dict(), rep_plain.as_dict()
        for key in ("kind", "using", "limit", "candidates_in", "candidates_out"):
            assert d[key] == d_plain[key], key
        assert d["stages"][0]["time_ms"] == d["time_ms"] > 0 and d["stages"][0]["limit"] == 40
        assert [h.id for h in fused] == [h.id for h in plain]
        assert [h.score for h in fused] == pytest.approx([h.score for h in plain], abs=1e-5)
    # another query in the leaf is not the vector's own search: step by step
    q, other = rows(rng, 2, 16)
    root = Stage(q, limit=10, prefetch=[Stage(other, params=cand, limit=40)])
    check(c, root)
    assert run(c, root, with_payload=False)[1].stages[0].kind == "search"


def test_the_int8_pair_returns_the_special_paths_hits_and_scores(engine: Engine) -> None:
    """The compressed-rerank pipeline (a `rescore: false` leaf of ceil(k x the index's oversampling), then
    a rescore) answers exactly as the plain search of an int8 vector, which reranks inside its native
    call: the same ids and scores for every query, whether its shape is new or remembered, with an
    offset, and with payloads."""
    import math

    from index.pair import _PAIRS
    from tests.unit.index.conftest import wait_indexed

    c = engine.create("q8x", {"dim": 16, "quantize": {"type": "int8"}, "training": {"threshold": 500}})
    rng = np.random.default_rng(11)
    c.upsert(list(range(1500)), rows(rng, 1500, 16), [{"i": i} for i in range(1500)])
    wait_indexed(c)
    index = c.fields[""].state.index  # type: ignore[union-attr]
    cand = math.ceil(10 * float(index.default_oversampling))
    assert cand > 10  # the special path does rerank more than it returns
    leaf = SearchParams(rescore=False)
    _PAIRS.clear()
    for n, q in enumerate(rows(rng, 12, 16)):
        offset = 3 if n % 4 == 3 else 0
        special = c.search([Query(q, limit=10 - offset, offset=offset, with_payload=n % 2 == 0)])[0]
        root = Stage(q, limit=10 - offset, prefetch=[Stage(q, limit=cand, params=leaf)])
        check(c, root, offset=offset)
        got, rep = run(c, root, offset=offset, with_payload=n % 2 == 0)
        assert rep.strategy == f"{special.strategy} (candidates and rescore in one search)"
        assert [h.id for h in got] == [h.id for h in special.hits]
        assert [h.score for h in got] == [h.score for h in special.hits]
        assert [h.payload for h in got] == [h.payload for h in special.hits]
    assert len(_PAIRS) == 1  # one shape (k = limit + offset = 10), checked once, remembered for the rest


def test_the_fused_search_is_the_plain_one_when_its_knobs_are_the_defaults(engine: Engine) -> None:
    """The pair's one search carries no params when the vector's own defaults take exactly the leaf's
    candidates (so it takes the plain search's way to the native call), and explicit ones otherwise
    (another count, an `ef`, a recall target that retunes the defaults); its `Query`, built field by
    field, has every field a `Query` has; a leaf's knobs changed in place are a new shape."""
    import dataclasses

    from tests.unit.index.conftest import wait_indexed

    c = engine.create("q8d", {"dim": 16, "quantize": {"type": "int8"}, "training": {"threshold": 500}})
    tuned = engine.create(
        "q8r",
        {"dim": 16, "quantize": {"type": "int8"}, "training": {"threshold": 500}, "quality": {"recall_target": 0.9}},
    )
    rng = np.random.default_rng(12)
    data = rows(rng, 1000, 16)
    for x in (c, tuned):
        x.upsert(list(range(1000)), data)
        wait_indexed(x)
    seen: list[Query] = []

    class Spy:  # the collection, but it keeps the queries its `search` is given
        def __init__(self, inner: Collection) -> None:
            self.inner, self.config, self.distributed = inner, inner.config, inner.distributed

        def vector_config(self, using: str | None) -> Any:
            return self.inner.vector_config(using)

        def search(self, queries: list[Query], *, partial: bool = False) -> list[QueryResult]:
            seen.extend(queries)
            return self.inner.search(queries)

    leaf = SearchParams(rescore=False)
    q = data[3]
    for coll, n, params, want in (
        (c, 20, leaf, None),  # int8's default oversampling is 2: 20 candidates for 10
        (c, 30, leaf, (None, 3.0)),
        (c, 20, SearchParams(rescore=False, ef=64), (64, 2.0)),
        (tuned, 20, leaf, (None, 2.0)),
    ):
        seen.clear()
        root = Stage(q, limit=10, prefetch=[Stage(q, limit=n, params=params)])
        check(Spy(coll), root)  # type: ignore[arg-type]
        got, rep = run(Spy(coll), root, with_payload=False)  # type: ignore[arg-type]
        assert rep.stages[0].strategy == "fused into the rescore" and len(seen) == 1
        sent = seen[0]
        p = sent.params
        assert (p if p is None else (p.ef, p.oversampling)) == want
        assert p is None or p.rescore is True
        fields = {f.name: getattr(sent, f.name) for f in dataclasses.fields(Query)}  # each one set
        made = Query(q, limit=10, params=p, with_payload=False, using=sent.using)
        assert fields == {f.name: getattr(made, f.name) for f in dataclasses.fields(Query)}
        special = coll.search([Query(q, limit=10, params=None if want is None else p, with_payload=False)])[0]
        assert [(h.id, h.score) for h in got] == [(h.id, h.score) for h in special.hits]
    # the same leaf params object, changed in place: not the shape remembered for it
    leaf.ef = 64
    seen.clear()
    root = Stage(q, limit=10, prefetch=[Stage(q, limit=20, params=leaf)])
    check(Spy(c), root)  # type: ignore[arg-type]
    run(Spy(c), root, with_payload=False)  # type: ignore[arg-type]
    assert seen[0].params is not None and seen[0].params.ef == 64


def test_the_fused_pair_keeps_payloads_offsets_filters_and_its_checks(engine: Engine) -> None:
    """The pair's quick check (`_check_pair`) and one-search run keep what the general tree does: the
    leaf's filter, the root's offset and payloads, a place under a fusion, and every refusal."""
    from tests.unit.index.conftest import wait_indexed

    c = engine.create("q8b", {"dim": 16, "quantize": {"type": "int8"}, "training": {"threshold": 500}})
    rng = np.random.default_rng(8)
    c.upsert(list(range(1500)), rows(rng, 1500, 16), [{"g": i % 2} for i in range(1500)])
    wait_indexed(c)
    cand = SearchParams(rescore=False, ef=200)
    q = rows(rng, 1, 16)[0]
    even = _flt(g=0)
    fused = Stage(q, limit=6, prefetch=[Stage(q.copy(), params=cand, limit=24, filter=even)])
    plain = Stage(q, limit=6, prefetch=[Stage(q.copy(), params=cand, limit=24, filter=even, score_threshold=-2.0)])
    for root in (fused, plain):
        check(c, root, offset=2)
    got, rep = run(c, fused, offset=2, with_payload=True)
    want, _ = run(c, plain, offset=2, with_payload=True)
    assert rep.stages[0].strategy == "fused into the rescore"
    assert len(got) == 6 and [h.id for h in got] == [h.id for h in want]
    assert all(h.payload == {"g": 0} for h in got)
    # under a fusion, the pair is still one search, and the fusion sees its list
    pair = Stage(q, limit=8, prefetch=[Stage(q, params=cand, limit=32)])
    root = Stage(Fusion("rrf"), limit=8, prefetch=[pair, Stage(q, limit=8, params=SearchParams(exact=True))])
    check(c, root)
    hits, rep = run(c, root, with_payload=False)
    assert rep.stages[0].stages[0].strategy == "fused into the rescore" and len(hits) == 8
    # the quick check refuses what the general one does
    lim = PipelineLimits(max_depth=2, max_candidates=30, max_limit=1000)
    with pytest.raises(LimitExceeded):
        check(c, Stage(q, limit=10, prefetch=[Stage(q, params=cand, limit=40)]), limits=lim)
    with pytest.raises(DimensionMismatch):
        check(c, Stage(q, limit=10, prefetch=[Stage(q[:8].copy(), params=cand, limit=40)]))
    huge = np.full(16, 1e30, np.float32)  # finite, though its dot product with itself overflows float32
    check(c, Stage(huge, limit=10, prefetch=[Stage(huge, params=cand, limit=40)]))
    for v in (np.nan, np.inf, -np.inf):
        bad = q.copy()
        bad[3] = v
        with pytest.raises(InvalidVector):  # by the check, or (a shape seen before) by the one search
            tree = Stage(bad, limit=10, prefetch=[Stage(bad, params=cand, limit=40)])
            check(c, tree)
            run(c, tree)


def test_the_pair_remembered_per_shape_answers_each_query_and_each_collection_afresh(engine: Engine) -> None:
    """A pair of a shape seen before skips the config lookups (`index/pair.py`, `_PAIRS`): it still
    answers each new query as the step-by-step tree does, refuses a bad one, and another collection with
    the same request shape (but another dimension) gets its own check."""
    from index.pair import _PAIRS
    from tests.unit.index.conftest import wait_indexed

    c = engine.create("q8s", {"dim": 16, "quantize": {"type": "int8"}, "training": {"threshold": 500}})
    other = engine.create("q8t", {"dim": 8, "quantize": {"type": "int8"}, "training": {"threshold": 500}})
    rng = np.random.default_rng(9)
    c.upsert(list(range(1000)), rows(rng, 1000, 16))
    wait_indexed(c)
    cand = SearchParams(rescore=False)
    _PAIRS.clear()
    for _ in range(3):
        q = rows(rng, 1, 16)[0]
        fused = Stage(q, limit=5, prefetch=[Stage(q.copy(), params=cand, limit=20)])
        plain = Stage(q, limit=5, prefetch=[Stage(q.copy(), params=cand, limit=20, score_threshold=-2.0)])
        check(c, fused)
        check(c, plain)
        got, rep = run(c, fused, with_payload=False)
        want, _ = run(c, plain, with_payload=False)
        assert rep.stages[0].strategy == "fused into the rescore"
        assert [h.id for h in got] == [h.id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
    assert len(_PAIRS) == 1  # one shape, remembered once, used by the next two
    # two shapes in turn: the last one used is tried first (`_LAST`), the other found in `_PAIRS`
    for limit in (6, 5, 6, 5):
        q = rows(rng, 1, 16)[0]
        fused = Stage(q, limit=limit, prefetch=[Stage(q, params=cand, limit=20)])
        plain = Stage(q, limit=limit, prefetch=[Stage(q, params=cand, limit=20, score_threshold=-2.0)])
        check(c, fused)
        check(c, plain)
        got, rep = run(c, fused, with_payload=False)
        want, _ = run(c, plain, with_payload=False)
        assert rep.stages[0].strategy == "fused into the rescore" and rep.limit == limit
        assert [h.id for h in got] == [h.id for h in want] and len(got) == limit
    assert len(_PAIRS) == 2
    bad = q.copy()
    bad[0] = np.nan
    tree = Stage(bad, limit=5, prefetch=[Stage(bad, params=cand, limit=20)])
    check(c, tree)  # a shape seen before: the query's values are the search's to check, once
    with pytest.raises(InvalidVector):
        run(c, tree)
    with pytest.raises(DimensionMismatch):  # the same shape of request, on a collection of 8 dimensions
        check(other, Stage(q, limit=5, prefetch=[Stage(q, params=cand, limit=20)]))


def test_a_multivector_pair_is_remembered_whatever_its_token_count(engine: Engine) -> None:
    """A MUVERA pair's shape is its vector, limits and knobs, not the query's token count: queries of 3 to
    6 tokens share one entry of `_PAIRS` and answer as the step-by-step tree does; a bad query of a
    remembered shape (NaN, no tokens, another token dimension) is still refused by the check."""
    from index.pair import _PAIRS
    from tests.synth_tokens import clustered_token_sets
    from tests.unit.index.conftest import wait_indexed

    mv = {"type": "muvera", "k_sim": 2, "d_proj": 8, "r_reps": 4, "seed": 3, "exact_below": 0}
    c = engine.create("mvp", {"dim": 8, "metric": "dot", "multivector": mv, "index": {"type": "hnsw"}})
    docs, queries = clustered_token_sets(300, 6, 8, seed=4)
    c.upsert(list(range(300)), docs)
    wait_indexed(c, 60)
    assert len({len(q) for q in queries}) > 1
    cand = SearchParams(rescore=False)
    _PAIRS.clear()
    for q in queries:
        fused = Stage(q, limit=5, prefetch=[Stage(q, params=cand, limit=30)])
        plain = Stage(q, limit=5, prefetch=[Stage(q, params=cand, limit=30, score_threshold=-1e9)])
        check(c, fused)
        check(c, plain)
        got, rep = run(c, fused, with_payload=False)
        want, _ = run(c, plain, with_payload=False)
        assert rep.stages[0].strategy == "fused into the rescore" and len(got) == 5
        assert [h.id for h in got] == [h.id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)
    assert len(_PAIRS) == 1
    bad = queries[0].copy()
    bad[1, 2] = np.nan
    for q, err in (
        (bad, InvalidVector),
        (np.zeros((0, 8), np.float32), InvalidVector),
        (bad[:, :4], DimensionMismatch),
    ):
        q = np.ascontiguousarray(q)
        with pytest.raises(err):
            check(c, Stage(q, limit=5, prefetch=[Stage(q, params=cand, limit=30)]))
