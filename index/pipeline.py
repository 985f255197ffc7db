"""The query pipeline: a tree of searches, fusions and rescores, run through the collection contract.

A `Stage` is one node of the tree (the engine's form of `nestor_client.query.Prefetch`):
- **search** (no prefetch): `search(Query)` on the vector `using`, under the node's filter ANDed with
  every filter above it;
- **rescore** (prefetch, and a vector query): the union of the prefetched points is scored exactly on
  `using` (a `has_id` filter and `params.exact`, so a dense vector scores its float32 rows and a
  multivector field runs MaxSim), and the best `limit` kept;
- **fusion** (prefetch, and a `Fusion`): the prefetch lists fused by RRF or DBSF (`index/fusion.py`);
- **prefetch** (one prefetch, no query): its list, cut to `limit`.

The value types live in `index/stages.py`; the fused candidates-and-rescore pair in `index/pair.py`.
Leaves go through `CollectionReader.search`, never a field's own path, so anything a collection can
search (a sharded collection, a sparse vector once it exists) is a leaf; a rescore is a search too.
`check` validates the whole tree before anything runs (vector names, dimensions, a fusion without
prefetch, depth and candidate limits, point ids), so a bad pipeline is a 4xx and nothing ran.
"""

from __future__ import annotations

import time
from typing import Any, Literal, cast

import numpy as np

from index.backends.base import F32
from index.contract import CollectionReader, Hit, PointIdT, Query, SparseVec, WithVector
from index.errors import DimensionMismatch, InvalidRequest, InvalidVector, LimitExceeded
from index.fusion import dbsf, rrf
from index.pair import check_pair, fused_params, run_fused
from index.sparse import check_sparse
from index.stages import Fusion, PipelineLimits, Scored, Stage, StageReport, and_filters, finite
from nestor_client.models import Filter, HasIdCondition, Metric, SearchParams

__all__ = ["Fusion", "PipelineLimits", "Stage", "StageReport", "check", "run"]

_DEFAULT_LIMITS = PipelineLimits()  # one instance: a frozen dataclass costs a microsecond to build


def check(
    coll: CollectionReader,
    root: Stage,
    *,
    offset: int = 0,
    limits: PipelineLimits | None = None,
    visible: Filter | None = None,
    with_vector: WithVector = False,
) -> None:
    """Validate the whole tree (raises a 4xx domain error); resolves queries by point id to vectors.
    `visible`: only points matching it may be queried by id (an API key's scope)."""
    lim = limits or _DEFAULT_LIMITS
    if with_vector is not False and with_vector is not True:  # names (cheaper than `isinstance` per query)
        have = [*coll.config.vector_fields(), *coll.config.sparse_fields()]
        unknown = [n for n in with_vector if n not in have]
        if unknown:
            raise InvalidRequest(f"with_vector names {unknown} are not vectors of this collection ({list(have)})")
    if check_pair(coll, root, root.limit + offset, lim):
        return
    total = _check(coll, root, 0, lim, root.limit + offset, visible, None)
    if total > lim.max_candidates:
        raise LimitExceeded(f"the pipeline asks for {total} candidates in all, over the maximum {lim.max_candidates}")


def _check(
    coll: CollectionReader,
    st: Stage,
    depth: int,
    lim: PipelineLimits,
    k: int,
    visible: Filter | None,
    parent: tuple[Stage, str | None] | None,
) -> int:
    """Check node `st` and those under it (`parent`: the node above, and its `using` as given)."""
    raw_using = st.using
    where = "the query" if depth == 0 else f"a prefetch at depth {depth}"
    if depth > lim.max_depth:
        raise LimitExceeded(f"{where}: prefetch nested deeper than the maximum depth {lim.max_depth}")
    if k > lim.max_limit:
        raise LimitExceeded(f"{where}: limit {k} exceeds the maximum {lim.max_limit}")
    if isinstance(st.query, Fusion):
        if not st.prefetch:
            raise InvalidRequest(f"{where}: a fusion needs prefetch results to fuse")
        if st.using is not None:
            raise InvalidRequest(f"{where}: a fusion uses no vector: drop 'using'")
        if st.query.weights is not None and len(st.query.weights) != len(st.prefetch):
            raise InvalidRequest(
                f"{where}: {len(st.query.weights)} rrf weights for {len(st.prefetch)} prefetches: give one per prefetch"
            )
    elif st.query is None:
        if len(st.prefetch) != 1:
            raise InvalidRequest(
                f"{where}: give a query (a vector, a point id, a text or a fusion)"
                + ("; several prefetches need a fusion to combine them" if st.prefetch else "")
            )
    elif not _same_as_checked(st, parent):
        _check_vector(coll, st, where, visible)
    if st.prefetch and st.params is not None:
        raise InvalidRequest(f"{where}: params tune searches; a rescore over prefetch results is always exact")
    total = k + sum(_check(coll, p, depth + 1, lim, p.limit, visible, (st, raw_using)) for p in st.prefetch)
    st.fused = fused_params(coll, st, k) if st.prefetch else None
    return total


def _same_as_checked(st: Stage, above: tuple[Stage, str | None] | None) -> bool:
    """A dense query equal to its parent's, on the same vector (checked just before): its checks hold
    (a rescore over a prefetch of the same query, the pipeline form of a compressed index's rerank)."""
    if above is None:
        return False
    parent, parent_using = above
    if not isinstance(st.query, np.ndarray) or not isinstance(parent.query, np.ndarray):
        return False
    pq, q = parent.query, st.query
    if st.using != parent_using or parent.exclude is not None:
        return False
    if q is not pq and (q.dtype != pq.dtype or q.shape != pq.shape or q.tobytes() != pq.tobytes()):
        return False
    st.query, st.using, st.lower = pq, parent.using, parent.lower
    return True


def _stored(coll: CollectionReader, pid: PointIdT, name: str, where: str, visible: Filter | None) -> Any:
    """Point `pid`'s stored vector `name`, to query by (InvalidRequest when there is none)."""
    if visible is None:
        found = coll.get([pid], with_payload=False, with_vector=[name])
    else:  # a point outside the scope is not there, as far as this key knows
        only = Filter(must=[visible, HasIdCondition(has_id=[pid])])
        found = coll.scroll(only, limit=1, with_payload=False, with_vector=[name])[0]
    stored = (found[0].vectors or {}).get(name) if found else None
    if not found:
        raise InvalidRequest(f"{where}: no point with id {pid!r} to query by")
    if stored is None or len(stored) == 0:
        raise InvalidRequest(f"{where}: point {pid!r} has no vector {name!r} to query by")
    return stored


def _check_sparse(coll: CollectionReader, st: Stage, where: str, visible: Filter | None) -> None:
    """A node on a sparse vector: its query is a `SparseVec` (or a point id, its stored sparse vector)."""
    name = st.using
    assert name is not None
    if isinstance(st.query, int | str):
        pid = st.query
        stored = _stored(coll, pid, name, where, visible)
        st.query = SparseVec(np.asarray(stored["indices"], np.uint32), np.asarray(stored["values"], np.float32))
        st.exclude = pid
    if not isinstance(st.query, SparseVec):
        raise InvalidVector(f'{where}: vector {name!r} is sparse: query it with {{"indices", "values"}} or a text')
    try:
        st.query = check_sparse(st.query, f"{where}: sparse query")
    except InvalidVector as e:
        raise InvalidVector(str(e)) from None


def _check_vector(coll: CollectionReader, st: Stage, where: str, visible: Filter | None) -> None:
    if st.using is not None and st.using in (coll.config.sparse_vectors or ()):
        return _check_sparse(coll, st, where, visible)
    name, vcfg = coll.vector_config(st.using)  # InvalidRequest naming the vectors there are
    st.using, st.lower = name, vcfg.metric is Metric.l2
    if isinstance(st.query, SparseVec):
        what = f"vector {name!r}" if name else "the default vector"
        raise InvalidVector(f"{where}: {what} is dense: a sparse query needs 'using', the name of a sparse vector")
    if isinstance(st.query, int | str):
        pid = st.query
        st.query, st.exclude = np.asarray(_stored(coll, pid, name, where, visible), dtype=np.float32), pid
    vec = st.query
    assert isinstance(vec, np.ndarray)
    want = 2 if vcfg.multivector is not None else 1
    if vec.ndim != want:
        kind = "a multivector (a list of token vectors)" if want == 2 else "one vector"
        raise InvalidVector(f"{where}: vector {name!r} is queried with {kind}")
    if vec.size == 0:
        raise InvalidVector(f"{where}: the query is empty")
    if vec.shape[-1] != vcfg.dim:
        raise DimensionMismatch(f"{where}: vector {name!r} has dimension {vcfg.dim}, the query {vec.shape[-1]}")
    if not finite(vec):
        raise InvalidVector(f"{where}: the query vector holds NaN or infinity")


def run(
    coll: CollectionReader,
    root: Stage,
    *,
    offset: int = 0,
    with_payload: bool = True,
    with_vector: WithVector = False,
    partial: bool = False,
) -> tuple[list[Hit], StageReport]:
    """Run a checked tree; the root's hits (paged by `offset`) and what ran at each node."""
    if root.fused is not None:  # one search answers the tree: payloads and vectors come with it
        return run_fused(coll, partial, root, root.filter, root.limit + offset, with_payload, with_vector, offset)
    ex = _Runner(coll, partial)
    if not root.prefetch and not isinstance(root.query, Fusion) and root.query is not None:
        # a plain search: payloads and vectors come with it, no second read
        hits, report = ex.search(root, root.filter, root.limit + offset, with_payload, with_vector)
        return hits[offset:], report
    scored, report, _ = ex.node(root, None, root.limit + offset)
    scored = scored[offset:]
    if not (with_payload or with_vector):
        return [Hit(pid, s) for pid, s in scored], report
    got = {h.id: h for h in coll.get([pid for pid, _ in scored], with_payload=with_payload, with_vector=with_vector)}
    out = []
    for pid, s in scored:
        h = got.get(pid)
        if h is not None:  # deleted since it was scored: left out
            out.append(Hit(pid, s, h.payload, h.vectors))
    return out, report


class _Runner:
    def __init__(self, coll: CollectionReader, partial: bool) -> None:
        self.coll = coll
        self.partial = partial

    def node(self, st: Stage, above: Filter | None, k: int) -> tuple[Scored, StageReport, bool]:
        """The node's list, its report, and whether its scores are distances (lower is better)."""
        flt = and_filters(above, st.filter)
        if not st.prefetch:
            hits, report = self.search(st, flt, k, False, False)
            return [(h.id, h.score) for h in hits], report, st.lower
        if st.fused is not None:
            hits, report = run_fused(self.coll, self.partial, st, flt, k, False, False)
            return [(h.id, h.score) for h in hits], report, st.lower
        started = time.perf_counter()
        subs = [self.node(p, flt, p.limit) for p in st.prefetch]
        cand = sum(len(s[0]) for s in subs)
        children = [s[1] for s in subs]
        if isinstance(st.query, Fusion):
            out = _fuse(st.query, [(s[0], s[2]) for s in subs])
            out = _threshold(out[:k], st.score_threshold, lower=False)
            return out, _report("fusion", None, st.query.method, k, cand, out, started, children), False
        if st.query is None:  # one prefetch, passed through
            lower = subs[0][2]
            out = _threshold(subs[0][0][:k], st.score_threshold, lower=lower)
            return out, _report("prefetch", None, None, k, cand, out, started, children), lower
        ids = list(dict.fromkeys(pid for s in subs for pid, _ in s[0] if pid != st.exclude))
        out, strategy = self.rescore(st, ids, k)
        return out, _report("rescore", st.using, strategy, k, cand, out, started, children), st.lower

    def search(
        self, st: Stage, flt: Filter | None, k: int, with_payload: bool, with_vector: WithVector
    ) -> tuple[list[Hit], StageReport]:
        started = time.perf_counter()
        vec, sparse = _vectors(st)
        extra = st.exclude is not None  # one more, in case the point queried by is among them
        q = Query(
            vector=vec,
            sparse=sparse,
            limit=k + extra,
            filter=flt,
            params=st.params,
            with_payload=with_payload,
            with_vector=with_vector,
            score_threshold=st.score_threshold,
            using=st.using,
        )
        res = self.coll.search([q], partial=self.partial)[0]
        hits = [h for h in res.hits if h.id != st.exclude][:k]
        scored = [(h.id, h.score) for h in hits]
        return hits, _report("search", st.using, res.strategy, k, 0, scored, started, [])

    def rescore(self, st: Stage, ids: list[PointIdT], k: int) -> tuple[Scored, str]:
        """The exact scores of `ids` on `st.using`, best `k` (a search restricted to them by `has_id`)."""
        if not ids:
            return [], "none"
        vec, sparse = _vectors(st)
        # the ids come from our own searches: no need to validate them again
        restrict = Filter.model_construct(must=[HasIdCondition.model_construct(has_id=ids)])
        q = Query(
            vector=vec,
            sparse=sparse,
            limit=k,
            filter=restrict,
            params=SearchParams(exact=True),
            with_payload=False,
            score_threshold=st.score_threshold,
            using=st.using,
        )
        res = self.coll.search([q], partial=self.partial)[0]
        return [(h.id, h.score) for h in res.hits], res.strategy


def _vectors(st: Stage) -> tuple[F32, SparseVec | None]:
    """A checked node's query as `Query` carries it: a dense array, or an empty one and a sparse vector."""
    if isinstance(st.query, SparseVec):
        return np.zeros(0, np.float32), st.query
    assert isinstance(st.query, np.ndarray)
    return st.query, None


def _fuse(how: Fusion, lists: list[tuple[Scored, bool]]) -> Scored:
    if how.method == "rrf":
        fused = rrf([s for s, _ in lists], k=how.k, weights=how.weights)
    else:  # distances are negated so that higher is better in every list DBSF normalises
        fused = dbsf([[(pid, -sc) for pid, sc in s] if lower else s for s, lower in lists])
    return cast(Scored, fused)  # the ids are the lists' own


def _threshold(scored: Scored, t: float | None, *, lower: bool) -> Scored:
    if t is None:
        return scored
    return [(pid, s) for pid, s in scored if (s <= t if lower else s >= t)]


def _report(
    kind: Literal["search", "rescore", "fusion", "prefetch"],
    using: str | None,
    strategy: str | None,
    limit: int,
    cand: int,
    out: Scored,
    started: float,
    children: list[StageReport],
) -> StageReport:
    return StageReport(
        kind=kind,
        using=using,
        strategy=strategy,
        limit=limit,
        candidates_in=cand,
        candidates_out=len(out),
        time_ms=(time.perf_counter() - started) * 1000,
        stages=children,
    )
