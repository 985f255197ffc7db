"""Searching a collection: one query, or a batch whose unfiltered queries on one dense vector share an ANN call.

The field plans the search (`index/planner.py` for dense vectors, `MultiVectorField.search` for token
sets); a filter becomes the set of matching labels, from the payload indexes when they answer all of it
(otherwise from SQL, and the strategy says `+payload_scan`); `index/hits.py` turns labels into hits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pyroaring import BitMap

from index import ivf_search, native, planner, quality, single
from index.backends.base import F32
from index.backends.graph import GraphIndex
from index.backends.ivfpq import IvfPqIndex
from index.contract import Query, QueryResult
from index.dense import DenseField
from index.encoded import EncodedIndex
from index.filter_fast import select_few, select_one
from index.multivector import MultiVectorField
from index.selection import Selection
from index.sparse import SparseField
from index.tenants import TenantGraph
from nestor_client.models import Filter

if TYPE_CHECKING:
    from index.collection import Collection

__all__ = ["search_one", "search_queries"]


def search_queries(coll: Collection, queries: list[Query]) -> list[QueryResult]:
    """Answer several queries; unfiltered ones on a dense vector with equal knobs share one ANN call."""
    if len(queries) == 1:
        return [search_one(coll, queries[0])]
    results: list[QueryResult | None] = [None] * len(queries)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, q in enumerate(queries):
        f = coll.field(q.using)
        if q.filter is None and isinstance(f, DenseField):
            planner.check_params(f, q.params)
            p = q.params
            knobs = None if p is None else (p.ef, p.nprobe, p.oversampling, p.rescore, p.exact)
            groups.setdefault((f.name, q.limit + q.offset, knobs), []).append(i)
        else:
            results[i] = search_one(coll, q)
    for (fname, k, _), members in groups.items():
        f = coll.fields[fname]
        assert isinstance(f, DenseField)
        first = queries[members[0]]
        mat = f.prepare(np.stack([queries[i].vector for i in members]))
        _remember(coll, f, mat)
        got = native.search_batch(f, mat, k, first.params, coll.options.search_threads)
        if got is not None:
            for (labels, scores), i in zip(got[0], members, strict=True):
                results[i] = coll.hits.finish(queries[i], f, (labels, scores, got[1]))
            continue
        hits, strategy = planner.plan(f, mat, k, first.params, None)
        for row, i in enumerate(members):
            labels, scores = planner.to_user(f, hits.labels[row], hits.scores[row])
            results[i] = coll.hits.finish(queries[i], f, (labels, scores, strategy))
    return [r for r in results if r is not None]


def _remember(coll: Collection, f: DenseField, mat: F32) -> None:
    """Keep the queries for a field that learns from recent ones (LeanVec-OOD, a recall target's calibration)."""
    if f.query_sample.reservoir_size:
        f.query_sample.offer(mat)
        if quality.sample_grew(f):
            coll.wake_indexer()  # twice the real queries: calibrate again on them


def search_one(coll: Collection, q: Query) -> QueryResult:
    f = coll.field(q.using)
    if isinstance(f, DenseField):  # the common cases first, in as few steps as possible
        if q.filter is None:
            st = f.state
            idx = st.index
            done = None  # to hits in one native call: `native.answer`, index/ivf_search.py
            if (type(idx) is GraphIndex or type(idx) is EncodedIndex) and native.ENABLED:
                done = native.answer(f, idx, st.upto, q, coll.labels.ids)
            elif type(idx) is IvfPqIndex and native.ENABLED:
                done = ivf_search.answer(f, idx, st.upto, q, coll.labels.ids)
            if done is not None:
                return done
            return coll.hits.finish(q, f, _unfiltered(coll, f, q))
        return _dense_filtered(coll, f, q, q.filter)
    scanned: list[bool] = []
    result = _search_filtered(coll, q, scanned)
    if scanned and scanned[0]:
        result.strategy += "+payload_scan"  # a filter key without a payload index: tell the user
    return result


def _unfiltered(coll: Collection, f: DenseField, q: Query) -> planner.Ranked:
    planner.check_params(f, q.params)
    mat = f.prepare_one(q.vector)
    _remember(coll, f, mat)
    return single.rank(f, q, mat)


def _search_filtered(coll: Collection, q: Query, scanned: list[bool]) -> QueryResult:
    """A sparse or multi-vector field's search (a dense field's are `_unfiltered` and `_dense_filtered`)."""
    f = coll.field(q.using)
    flt = q.filter

    def allowed() -> Selection | None:
        if flt is None:
            return None
        sel, indexed = coll.selection(flt)
        scanned.append(not indexed)
        return sel

    if isinstance(f, MultiVectorField):
        return coll.hits.finish(q, f, f.search(q, lambda: None if (sel := allowed()) is None else sel.labels))
    assert isinstance(f, SparseField)
    return coll.hits.finish(q, f, f.search(q, allowed))


def _dense_filtered(coll: Collection, f: DenseField, q: Query, flt: Filter) -> QueryResult:
    """A filtered search of a dense field. The commonest filter, one condition on an indexed key that matches
    a few points (a tenant: ~100 rows), goes from the index's bitmap to one native scan with nothing
    between: for `tenant == t7` at 100k points that scan is a fifth of the search's CPU time, and each
    layer around it (a `Selection`, a closure, a second field lookup) cost as much again. A keyword value's
    bitmap comes from the indexes' memo, and the query's check and normalisation happen in the scan's call."""
    planner.check_params(f, q.params)
    k = q.limit + q.offset
    most = f.options.exact_filter_threshold
    few = select_few(coll.payload, flt, coll.config.payload_schema, most)
    if type(few) is bytes and not f.query_sample.reservoir_size:  # a sampled query takes `_remember`'s way
        ranked = native.exact_vector(f, q.vector, k, few)  # the plan `decide` gives it whatever the index
        if ranked is not None:
            return coll.hits.finish(q, f, ranked)
    mat = f.prepare_one(q.vector)  # raises for a vector the native check turned down
    _remember(coll, f, mat)
    found = few if type(few) is BitMap else select_one(coll.payload, flt, coll.config.payload_schema)
    if found is not None and len(found) <= most:
        if not found:
            return QueryResult([], "exact_filtered")
        few_ranked = native.exact_bitmap(f, mat, k, found)
        if few_ranked is not None:
            return coll.hits.finish(q, f, few_ranked)
    subset, indexed = (Selection(bitmap=found), True) if found is not None else coll.selection(flt)
    result = coll.hits.finish(q, f, _dense_planned(coll, f, q, mat, k, subset))
    if not indexed:
        result.strategy += "+payload_scan"  # a filter key without a payload index: tell the user
    return result


def _dense_planned(coll: Collection, f: DenseField, q: Query, mat: F32, k: int, subset: Selection) -> planner.Ranked:
    if len(subset) == 0:
        return [], [], "exact_filtered"
    few = native.exact_few(f, mat, k, subset)
    if few is not None:  # the plan of a few matches, without the planner around it
        return few
    tg = _tenant_graph(coll, f, q, subset)
    if tg is not None:
        return _tenant_search(coll, f, tg, q, mat, subset)
    ranked = native.search(f, mat, k, q.params, subset)
    if ranked is None:
        hits, strategy = planner.plan(f, mat, k, q.params, subset)
        labels, scores = planner.to_user(f, hits.labels[0], hits.scores[0])
        ranked = labels, scores, strategy
    return ranked


def _tenant_graph(coll: Collection, f: DenseField, q: Query, subset: Selection) -> TenantGraph | None:
    """The graph of the tenant the filter requires, when it has one and the filter is not cheaper exactly."""
    if q.filter is None or len(subset) <= f.options.exact_filter_threshold:
        return None
    if q.params is not None and q.params.exact:
        return None
    tenant = coll.payload.tenant_of(q.filter)
    return None if tenant is None else coll.tenants.get(f.name, *tenant)


def _tenant_search(
    coll: Collection, f: DenseField, tg: TenantGraph, q: Query, mat: F32, subset: Selection
) -> planner.Ranked:
    k = q.limit + q.offset
    ef = q.params.ef if q.params is not None else None
    hits = planner.drop_dead(coll.tenants.search(f, tg, mat, k, ef, subset.bitmap), f.alive)
    strategy = "tenant_hnsw"
    if (hits.labels[0, :k] >= 0).sum() < min(k, len(subset)):  # points died under the walk: exact instead
        hits, strategy = planner.exact_rows(f, mat, k, subset.labels, f.alive), "exact_fallback"
    labels, scores = planner.to_user(f, hits.labels[0, :k], hits.scores[0, :k])
    return labels, scores, strategy
