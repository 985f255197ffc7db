"""The filtered-search planner against a brute-force oracle (Hypothesis).

One small synthetic collection per index kind, built once for the module: 4,000 points with seeded
random payloads (keywords, integers, floats, booleans, RFC 3339 datetimes, arrays of keywords, nested
keys `a.b`, missing keys, nulls, empty arrays), some keys payload-indexed and some not, then overwritten
and deleted in part (so the graphs hold tombstones and the indexes dead labels). Hypothesis draws
filters (must/should/must_not, nested; match value/any/except, ranges, datetime ranges, is_empty,
is_null, has_id) whose selectivities span every plan, and a query.

The oracle evaluates the filter in plain Python over the payloads (its own implementation of the
semantics in `index/filters.py`, not the engine's evaluator) and ranks the matching points by exact
cosine. For every example, with the native executor of the plan (index/native.py) and with numpy's:
- `count` equals the oracle's count, on every collection;
- every hit matches the filter, hits are unique and best first, each hit's score is its true score, and
  a search returns `min(limit, matching)` hits whatever the plan;
- the strategy follows the planner's rule (`exact_filtered` up to `exact_filter_threshold` matches, on
  the graph `*_acorn` below `filter_walk_fraction` of the points and `*_filtered` above, `exact_fallback`
  when a walk came up short), and ends in `+payload_scan` exactly when a key has no payload index;
- under an exact plan the hits are the oracle's top `limit` (ties may permute);
- under a graph plan, recall@limit averaged over the examples is at least 0.95 (float HNSW), 0.9
  (int8-compressed HNSW), 0.85 (IVF-PQ).

A second collection of the float graph runs with `exact_filter_threshold=0`, so every filter that
matches more points than the walk's beam (ef) walks the graph, and falls back to exact when the walk
finds too few; fewer matches than that are scored exactly whatever the threshold.

Vectors: random unit vectors for the graphs. IVF-PQ gets structured data (`tests/synth.manifold`): on
isotropic noise its 4-bit codes reach about 0.85 recall with no filter at all, so the bar would measure
PQ, not filtering.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from index import native
from index.catalog import Catalog
from index.collection import Collection
from index.contract import CollectionOptions, PointIdT, Query
from index.dense import DenseField
from index.plans import ACORN_MIN_SHARE, graph_nodes, ivf_shortlist, walk_floor
from nestor_client.models import CollectionConfig, Filter, IvfPqIndexConfig, PayloadSchemaType, SearchParams
from tests.synth import manifold
from tests.unit.index.conftest import F32, unit, wait_indexed

S = PayloadSchemaType
N, DIM, NQ = 4000, 32, 64
THRESHOLD = 200  # exact_filter_threshold: 5 % of the points
FRACTION = 0.3  # filter_walk_fraction
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
YEAR = 366 * 86400
INDEXED = {"kw": S.keyword, "tags": S.keyword, "a.b": S.keyword, "n": S.integer, "x": S.float, "flag": S.bool}
INDEXED |= {"at": S.datetime}
UNINDEXED = ["kwu", "tagsu", "nu", "xu", "flagu", "a.c"]
KW = [f"k{i}" for i in range(10)]
KW_P = np.array([0.3, 0.2, 0.12, 0.1, 0.08, 0.07, 0.05, 0.04, 0.03, 0.01])
TAGS = [f"t{i}" for i in range(8)]
BS = [f"b{i}" for i in range(5)]

Payload = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Payloads: seeded, every kind of value the filters read


OFFSETS = [0, 0, 2, -5, 9]  # hours east of UTC


def _iso(ts: int, off: int) -> str:
    """`ts` (epoch seconds) as RFC 3339, in UTC or with an offset of `off` hours (the same instant)."""
    local = str(np.datetime64(ts + off * 3600, "s"))  # the wall time at that offset
    return local + ("Z" if off == 0 else f"{'+' if off > 0 else '-'}{abs(off):02d}:00")


def _payload(rng: np.random.Generator, i: int) -> tuple[Payload, int | None]:
    """A point's payload, and the timestamp its `at` holds (None: no datetime there)."""
    p: Payload = {}
    r = rng.random(12)
    if r[0] < 0.04:
        p["kw"] = None
    elif r[0] < 0.12:
        p["kw"] = [str(v) for v in rng.choice(KW, size=2, p=KW_P)]
    elif r[0] < 0.95:
        p["kw"] = str(rng.choice(KW, p=KW_P))
    if r[1] < 0.95:
        p["kwu"] = str(rng.choice(KW, p=KW_P))
    if r[2] < 0.9:
        p["tags"] = [str(t) for t in rng.choice(TAGS, size=int(rng.integers(0, 4)), replace=False)]
    if r[3] < 0.9:
        p["tagsu"] = [str(t) for t in rng.choice(TAGS, size=int(rng.integers(0, 4)), replace=False)]
    if r[4] < 0.02:
        p["n"] = None
    elif r[4] < 0.95:
        p["n"] = int(rng.integers(1000))
    if r[5] < 0.95:
        p["nu"] = int(rng.integers(1000))
    if r[6] < 0.95:
        p["x"] = float(rng.random())
    if r[7] < 0.95:
        p["xu"] = float(rng.random())
    if r[8] < 0.95:
        p["flag"] = bool(rng.random() < 0.3)
    if r[9] < 0.95:
        p["flagu"] = bool(rng.random() < 0.3)
    if r[10] < 0.85:
        a: Payload = {}
        if rng.random() < 0.9:
            a["b"] = None if rng.random() < 0.05 else str(rng.choice(BS))
        if rng.random() < 0.9:
            a["c"] = int(rng.integers(10))
        p["a"] = a
    elif r[10] < 0.9:
        p["a"] = "flat"  # `a.b` is missing when `a` is not an object
    ts = None
    if r[11] < 0.03:
        p["at"] = None
    elif r[11] < 0.95:
        ts = T0 + int(rng.integers(YEAR))
        p["at"] = _iso(ts, int(rng.choice(OFFSETS)))
    p["i"] = i
    return p, ts


# ---------------------------------------------------------------------------------------------
# The oracle: the filter semantics of index/filters.py, written again for these payloads

_MISSING = object()


def _lookup(p: Payload, key: str) -> Any:
    v: Any = p
    for seg in key.split("."):
        if not isinstance(v, dict) or seg not in v:
            return _MISSING
        v = v[seg]
    return v


def _eq(e: Any, x: Any) -> bool:
    if isinstance(x, bool) or isinstance(e, bool):
        return isinstance(x, bool) and isinstance(e, bool) and e == x
    if isinstance(x, str) or isinstance(e, str):
        return isinstance(x, str) and isinstance(e, str) and e == x
    return isinstance(e, int | float) and e == x


def _elements(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _in_range(x: float, r: dict[str, float]) -> bool:
    ops: dict[str, Callable[[float, float], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return all(ops[op](x, b) for op, b in r.items())


@dataclass
class World:
    """The points as the oracle knows them: id -> payload, vector, and `at` timestamp."""

    payloads: dict[int, Payload]
    times: dict[int, int | None]
    ids: np.ndarray[Any, np.dtype[np.int64]] = field(init=False)
    _leaves: dict[str, np.ndarray[Any, np.dtype[np.bool_]]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = np.array(sorted(self.payloads), dtype=np.int64)

    def leaf(self, c: dict[str, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        key = json.dumps(c, sort_keys=True)
        if key not in self._leaves:  # Hypothesis repeats leaves often: each is evaluated once
            self._leaves[key] = self._leaf(c)
        return self._leaves[key]

    def _leaf(self, c: dict[str, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        if "has_id" in c:
            return np.isin(self.ids, c["has_id"])
        if "is_empty" in c:
            key = c["is_empty"]["key"]
            return np.array([_lookup(self.payloads[i], key) in (_MISSING, None, []) for i in self.ids.tolist()])
        if "is_null" in c:
            key = c["is_null"]["key"]
            return np.array([_lookup(self.payloads[i], key) is None for i in self.ids.tolist()])
        key = c["key"]
        return np.array([self._field(c, key, i) for i in self.ids.tolist()])

    def _field(self, c: dict[str, Any], key: str, i: int) -> bool:
        v = _lookup(self.payloads[i], key)
        if v is _MISSING:
            return False
        if "range" in c:
            if key == "at":  # a datetime index: bounds are epoch seconds here (RFC 3339 strings there)
                t = self.times[i]
                return t is not None and _in_range(t, c["_epoch"])
            nums = [e for e in _elements(v) if isinstance(e, int | float) and not isinstance(e, bool)]
            return any(_in_range(e, c["range"]) for e in nums)
        m = c["match"]
        if "value" in m:
            return any(_eq(e, m["value"]) for e in _elements(v))
        if "any" in m:
            return any(_eq(e, x) for e in _elements(v) for x in m["any"])
        excluded = m["except"]
        return any(
            e is not None and (isinstance(e, bool | dict) or not any(_eq(e, x) for x in excluded)) for e in _elements(v)
        )

    def mask(self, f: dict[str, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        out = np.ones(len(self.ids), bool)
        for c in f.get("must") or []:
            out &= self.cond(c)
        if f.get("should"):
            out &= np.logical_or.reduce([self.cond(c) for c in f["should"]])
        for c in f.get("must_not") or []:
            out &= ~self.cond(c)
        return out

    def cond(self, c: dict[str, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        leaf = any(k in c for k in ("key", "has_id", "is_empty", "is_null"))
        return self.leaf(c) if leaf else self.mask(c)  # a nested filter, maybe empty

    def matching(self, f: dict[str, Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
        return np.asarray(self.ids[self.mask(f)], np.int64)


def _wire(f: dict[str, Any]) -> Filter:
    """The engine's Filter (the oracle's private `_epoch` dropped)."""

    def strip(c: Any) -> Any:
        if isinstance(c, dict):
            return {k: strip(v) for k, v in c.items() if k != "_epoch"}
        if isinstance(c, list):
            return [strip(v) for v in c]
        return c

    return Filter.model_validate(strip(f))


def _datetime_range(f: dict[str, Any]) -> bool:
    return "_epoch" in str(f)


def _keys(f: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for clause in ("must", "should", "must_not"):
        for c in f.get(clause) or []:
            if any(k in c for k in ("must", "should", "must_not")):
                out |= _keys(c)
            elif "key" in c:
                out.add(c["key"])
            elif "is_empty" in c or "is_null" in c:
                out.add((c.get("is_empty") or c["is_null"])["key"])
    return out


# ---------------------------------------------------------------------------------------------
# Random filters


def _range(lo: float, hi: float, integers: bool) -> st.SearchStrategy[dict[str, float]]:
    """One or two bounds; the width, so the selectivity, anywhere from nothing to everything."""
    num = st.integers(int(lo), int(hi)) if integers else st.floats(lo, hi, allow_nan=False)
    lower = st.tuples(st.sampled_from(["gt", "gte"]), num)
    upper = st.tuples(st.sampled_from(["lt", "lte"]), num)
    return st.one_of(
        st.tuples(lower).map(dict),
        st.tuples(upper).map(dict),
        st.tuples(lower, upper).map(dict),
    )


def _at_range() -> st.SearchStrategy[dict[str, Any]]:
    def build(bounds: dict[str, int], off: int) -> dict[str, Any]:
        return {"key": "at", "range": {op: _iso(t, off) for op, t in bounds.items()}, "_epoch": bounds}

    return st.builds(build, _range(T0 - 86400, T0 + YEAR + 86400, True), st.sampled_from(OFFSETS))


def _leaf_of(key: str, clause: str, inner: str | None, v: Any) -> dict[str, Any]:
    return {"key": key, clause: v if inner is None else {inner: v}}


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    def match(key: str, values: list[Any]) -> st.SearchStrategy[dict[str, Any]]:
        one = st.sampled_from(values)
        few = st.lists(one, min_size=1, max_size=4, unique=True)
        return st.one_of(
            one.map(lambda v: {"key": key, "match": {"value": v}}),
            few.map(lambda v: {"key": key, "match": {"any": v}}),
            few.map(lambda v: {"key": key, "match": {"except": v}}),
        )

    ints = list(range(0, 1000, 7)) + [1000, -1]
    keyref = st.sampled_from([*INDEXED, *UNINDEXED, "a", "missing"])
    return st.one_of(
        *(match(k, KW) for k in ("kw", "kwu")),
        *(match(k, TAGS) for k in ("tags", "tagsu")),
        match("a.b", BS),
        *(match(k, ints) for k in ("n", "nu")),
        match("a.c", list(range(-1, 11))),
        *(st.sampled_from([True, False]).map(partial(_leaf_of, k, "match", "value")) for k in ("flag", "flagu")),
        *(_range(-10, 1010, True).map(partial(_leaf_of, k, "range", None)) for k in ("n", "nu")),
        _range(-1, 11, True).map(lambda r: {"key": "a.c", "range": r}),
        *(_range(-0.1, 1.1, False).map(partial(_leaf_of, k, "range", None)) for k in ("x", "xu")),
        _at_range(),
        keyref.map(lambda k: {"is_empty": {"key": k}}),
        keyref.map(lambda k: {"is_null": {"key": k}}),
        st.lists(st.integers(0, N * 11 // 10), min_size=1, max_size=60).map(lambda ids: {"has_id": ids}),
    )


def _clauses(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    clause = st.lists(children, min_size=1, max_size=3)
    return st.fixed_dictionaries({}, optional={"must": clause, "should": clause, "must_not": clause})


FILTERS = _clauses(st.recursive(_leaf(), _clauses, max_leaves=4))


# ---------------------------------------------------------------------------------------------
# The collections


@dataclass
class Target:
    """One collection under test, the vectors the oracle ranks by, and what its searches scored."""

    coll: Collection
    vectors: dict[int, F32]
    queries: F32
    graph: str  # the strategy prefix of its ANN plans
    bar: float  # mean recall its ANN plans must reach
    recalls: list[float] = field(default_factory=list)
    strategies: dict[str, int] = field(default_factory=dict)

    def truth(self, allowed: np.ndarray[Any, np.dtype[np.int64]], q: F32) -> tuple[list[int], F32]:
        """Every allowed id with its exact cosine, best first."""
        if not len(allowed):
            return [], np.empty(0, np.float32)
        mat = np.stack([self.vectors[i] for i in allowed.tolist()]).astype(np.float64)
        s = unit(mat.astype(np.float32)).astype(np.float64) @ unit(q).astype(np.float64)
        order = np.argsort(-s, kind="stable")
        return allowed[order].tolist(), s[order].astype(np.float32)


@dataclass
class Setup:
    world: World
    targets: dict[str, Target]


def _options(threshold: int) -> CollectionOptions:
    return CollectionOptions(
        save_idle_seconds=3600, save_max_seconds=3600, exact_filter_threshold=threshold, filter_walk_fraction=FRACTION
    )


def _load(
    coll: Collection, vecs: F32, pays: list[Payload | None], over: list[tuple[int, F32, Payload]], gone: list[int]
) -> None:
    for s in range(0, N, 1000):
        coll.upsert(list(range(s, s + 1000)), vecs[s : s + 1000], pays[s : s + 1000])
    for s in range(0, len(over), 100):
        chunk = over[s : s + 100]
        payloads: list[Payload | None] = [p for _, _, p in chunk]
        coll.upsert([i for i, _, _ in chunk], np.stack([v for _, v, _ in chunk]), payloads)
    coll.delete(list[PointIdT](gone))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    rng = np.random.default_rng(20261204)
    pays, times = zip(*(_payload(rng, i) for i in range(N)), strict=True)
    payloads, at = list(pays), list(times)
    noise = unit(rng.normal(size=(N + NQ, DIM)).astype(np.float32))
    structured = manifold(N + NQ, DIM, seed=5)
    # 10 % of the points overwritten (new vector and payload), 5 % deleted
    moved = [int(i) for i in rng.choice(N, N // 10, replace=False)]
    new = [_payload(rng, i) for i in moved]
    new_noise = unit(rng.normal(size=(len(moved), DIM)).astype(np.float32))
    new_structured = manifold(len(moved), DIM, seed=6)
    gone = [int(i) for i in rng.choice(N, N // 20, replace=False)]

    final = dict(enumerate(payloads))
    final_at = dict(enumerate(at))
    for i, (p, ts) in zip(moved, new, strict=True):
        final[i], final_at[i] = p, ts
    for i in gone:
        del final[i], final_at[i]
    world = World(final, final_at)

    def vectors(base: F32, fresh: F32) -> dict[int, F32]:
        out = {i: base[i] for i in range(N)}
        out.update({i: fresh[j] for j, i in enumerate(moved)})
        return {i: v for i, v in out.items() if i in final}

    catalogs = [Catalog(tmp_path_factory.mktemp("oracle"), _options(THRESHOLD))]
    catalogs.append(Catalog(tmp_path_factory.mktemp("walk_always"), _options(0)))
    hnsw = {"type": "hnsw", "m": 16, "ef_construction": 100}
    configs: dict[str, tuple[Catalog, dict[str, Any], F32, F32, str, float]] = {
        "hnsw": (catalogs[0], {"index": hnsw, "payload_schema": INDEXED}, noise, new_noise, "hnsw", 0.95),
        "walk": (catalogs[1], {"index": hnsw, "payload_schema": INDEXED}, noise, new_noise, "hnsw", 0.95),
        "int8": (
            catalogs[0],
            {"index": hnsw, "quantize": {"type": "int8"}, "training": {"threshold": 1000}},
            noise,
            new_noise,
            "int8_hnsw",
            0.9,
        ),
        "ivf_pq": (
            catalogs[0],
            {"index": {"type": "ivf_pq", "nlist": 32, "train_threshold": 1000}},
            structured,
            new_structured,
            "ivf_pq",
            # 4-bit PQ codes miss near-ties before the rescore, filter or not, and a limit-1 search's
            # recall is 0 or 1: two such misses in 25 searches cost 0.08
            0.85,
        ),
    }
    targets: dict[str, Target] = {}
    for name, (cat, cfg, base, fresh, graph, bar) in configs.items():
        coll, created = cat.create(name, CollectionConfig.model_validate({"dim": DIM, "metric": "cosine", **cfg}))
        assert created and isinstance(coll, Collection)
        over = [(i, fresh[j], p) for j, (i, (p, _)) in enumerate(zip(moved, new, strict=True))]
        _load(coll, base[:N], list[Payload | None](payloads), over, gone)
        if "payload_schema" not in cfg:  # the other road: indexes built from the store afterwards
            for key, schema in INDEXED.items():
                assert coll.create_payload_index(key, schema)
        targets[name] = Target(coll, vectors(base, fresh), base[N:], graph, bar)
    for t in targets.values():
        wait_indexed(t.coll, 60)
        assert t.coll.count == len(world.ids)
        assert t.coll.info().index.pending == 0
    yield Setup(world, targets)
    for cat in catalogs:
        cat.close()


# ---------------------------------------------------------------------------------------------
# One search against the oracle


def _broad(graph: str) -> tuple[str, str]:
    """The plans of a broad filter: the walk checking each result, or an unfiltered walk for more
    candidates tested afterwards (which takes the checked walk when too few of them match)."""
    return f"{graph}_filtered", f"{graph}_postfilter"


def _check_search(
    t: Target,
    f: dict[str, Any],
    allowed: np.ndarray[Any, np.dtype[np.int64]],
    qi: int,
    limit: int,
    params: SearchParams | None = None,
) -> str:
    """One search of `t` against the oracle (see the module docstring); returns the plan's name."""
    q = t.queries[qi]
    exact = params is not None and params.exact
    res = t.coll.search([Query(q, limit=limit, filter=_wire(f), params=params, with_payload=False)])[0]
    base, _, scan = res.strategy.partition("+")
    unindexed = not _keys(f) <= set(INDEXED)
    assert (scan == "payload_scan") == unindexed, (res.strategy, _keys(f))
    ids = [int(h.id) for h in res.hits]
    scores = np.array([h.score for h in res.hits], np.float32)
    ranked, true_scores = t.truth(allowed, q)
    m = len(allowed)
    assert len(ids) == min(limit, m), (res.strategy, len(ids), limit, m)
    assert len(set(ids)) == len(ids)
    assert set(ids) <= set(allowed.tolist()), f"a hit outside the filter under {res.strategy}"
    assert np.all(np.diff(scores) <= 1e-6), "hits are not best first"
    by_id = dict(zip(ranked, true_scores.tolist(), strict=True))
    np.testing.assert_allclose(scores, [by_id[i] for i in ids], atol=2e-4)  # each hit's own true score

    # which plan: the planner's rule, by the filter's exact cardinality
    # (the walk fraction is of the points the graph holds: the live ones, or every label ever given)
    live, labels = len(t.coll.labels.label_of), t.coll.labels.n
    dense = t.coll.fields[""]
    assert isinstance(dense, DenseField)
    state = dense.state
    assert state.index is not None
    floor = walk_floor(state.index, None, limit)  # below a walk's beam width, no walk pays
    # too sparse for an ACORN walk: the share of the graph's nodes, deleted ones included (index/plans.py)
    nodes = graph_nodes(state.index) + labels - state.upto
    sparse = t.graph != "ivf_pq" and m < ACORN_MIN_SHARE * nodes
    ivf = dense.config.index
    if isinstance(ivf, IvfPqIndexConfig):  # no more matches than IVF-PQ's rerank scores: exact is cheaper
        sparse = m <= ivf_shortlist(ivf, params, limit)[0]
    if exact or m == 0 or m <= max(dense.options.exact_filter_threshold, floor) or sparse:
        assert base == "exact_filtered", (res.strategy, m)
    elif m < FRACTION * live:
        narrow = "_filtered" if t.graph == "ivf_pq" else "_acorn"  # ACORN is a walk of the graph only
        assert base in (f"{t.graph}{narrow}", "exact_fallback"), (res.strategy, m)
    elif m >= FRACTION * labels:
        assert base in (*_broad(t.graph), "exact_fallback"), (res.strategy, m)
    else:
        assert base in (f"{t.graph}_acorn", *_broad(t.graph), "exact_fallback"), (res.strategy, m)
    t.strategies[base] = t.strategies.get(base, 0) + 1

    if base.startswith("exact"):  # exactly the oracle's top `limit`; tied scores may swap places
        np.testing.assert_allclose(scores, true_scores[: len(ids)], atol=2e-4)
        cut = true_scores[len(ids) - 1] - 2e-4 if ids else math.inf
        assert set(ranked[: len(ids)]) - set(ids) <= {i for i in ranked if by_id[i] >= cut}
    elif m:
        truth = set(ranked[:limit])
        t.recalls.append(len(truth & set(ids)) / len(truth))
    return base


def test_filtered_search_and_count_match_the_oracle(setup: Setup) -> None:
    world = setup.world
    for t in setup.targets.values():
        t.recalls.clear()
        t.strategies.clear()

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        f=FILTERS,
        qi=st.integers(0, NQ - 1),
        limit=st.sampled_from([1, 5, 10, 10, 25]),
        exact=st.integers(0, 5).map(lambda r: r == 0),
    )
    def check(f: dict[str, Any], qi: int, limit: int, exact: bool) -> None:
        # a datetime range beside an unindexed key is refused today: test_a_datetime_range_beside_an_unindexed_key
        assume(not (_datetime_range(f) and not _keys(f) <= set(INDEXED)))
        allowed = world.matching(f)
        for t in setup.targets.values():
            assert t.coll.count_where(_wire(f)) == len(allowed), (t.coll.name, f)
            for enabled in (True, False):  # both executors of the plan: one native call, and numpy
                native.ENABLED = enabled
                try:
                    _check_search(t, f, allowed, qi, limit, SearchParams(exact=True) if exact else None)
                finally:
                    native.ENABLED = True

    check()
    for name, t in setup.targets.items():
        assert len(t.recalls) >= 10, (name, t.strategies)  # the ANN plans really ran, often enough to average
        assert float(np.mean(t.recalls)) >= t.bar, (name, np.mean(t.recalls), t.strategies)


# ---------------------------------------------------------------------------------------------
# Every plan, at fixed selectivities


def _n_below(v: int) -> dict[str, Any]:
    return {"must": [{"key": "n", "range": {"lt": v}}]}


SELECTIVITIES = [  # a filter, and the plan its selectivity calls for
    (_n_below(30), "exact"),  # ~3 %: at most THRESHOLD
    (_n_below(150), "acorn"),  # ~14 %: below FRACTION
    (
        {
            "must": [{"key": "kw", "match": {"any": ["k2", "k3"]}}],
            "must_not": [{"key": "flag", "match": {"value": True}}],
        },
        "acorn",
    ),  # ~15 %
    (_n_below(600), "broad"),  # ~57 %
    ({"should": [{"key": "tags", "match": {"any": ["t0", "t1"]}}, {"is_empty": {"key": "tags"}}]}, "broad"),
]


def _plans(graph: str, kind: str) -> set[str]:
    if kind == "exact":
        return {"exact_filtered"}
    if kind == "acorn":
        return {f"{graph}_filtered" if graph == "ivf_pq" else f"{graph}_acorn"}
    return set(_broad(graph))


@pytest.mark.parametrize(("flt", "kind"), SELECTIVITIES, ids=[f"{k}{i}" for i, (_, k) in enumerate(SELECTIVITIES)])
def test_each_selectivity_takes_its_plan(setup: Setup, flt: dict[str, Any], kind: str) -> None:
    allowed = setup.world.matching(flt)
    for name in ("hnsw", "int8", "ivf_pq"):
        t = setup.targets[name]
        t.recalls.clear()
        seen = {_check_search(t, flt, allowed, qi, 10) for qi in range(20)}
        assert seen and seen <= _plans(t.graph, kind), (name, len(allowed), seen)
        if kind != "exact":
            assert float(np.mean(t.recalls)) >= t.bar, (name, t.recalls)


def _far_from_the_query(setup: Setup, name: str, params: SearchParams | None) -> tuple[set[str], float]:
    """The negatively correlated case: 40 % of the points match, all of them far from the query, so no
    unfiltered shortlist holds `limit` of them. The plans seen and the mean recall@10 over 10 queries."""
    t = setup.targets[name]
    t.recalls.clear()
    seen = set()
    for qi in range(10):
        ranked, _ = t.truth(setup.world.ids, t.queries[qi])
        far = sorted(ranked[len(ranked) * 3 // 5 :])
        flt = {"must": [{"has_id": far}]}
        assert len(setup.world.matching(flt)) == len(far)
        seen.add(_check_search(t, flt, np.array(far, np.int64), qi, 10, params))
    return seen, float(np.mean(t.recalls))


# The compressed indexes rerank more candidates here than by default: see the next test.
MORE_RERANK = {"hnsw": None, "int8": SearchParams(oversampling=4.0), "ivf_pq": SearchParams(oversampling=64.0)}


@pytest.mark.parametrize("name", ["hnsw", "int8", "ivf_pq"])
def test_a_broad_filter_far_from_the_query_walks_with_the_filter(setup: Setup, name: str) -> None:
    seen, recall = _far_from_the_query(setup, name, MORE_RERANK[name])
    assert seen == {f"{setup.targets[name].graph}_filtered"}, seen
    assert recall >= setup.targets[name].bar


def test_far_from_the_query_int8_widens_its_rescore_at_default_oversampling(setup: Setup) -> None:
    """The matches of a broad filter far from the query sit where scores are densest, closer together than
    int8 codes resolve: 20 candidates found their top 10 at recall ~0.78. The rescore sees that (its k-th
    exact score does not clear the codes' error, `Graph::walk_rescored`) and walks again with more."""
    graph = setup.targets["int8"].coll.fields[""].state.index.inner._graph
    before = graph.widened
    seen, recall = _far_from_the_query(setup, "int8", None)
    assert seen == {f"{setup.targets['int8'].graph}_filtered"}
    assert recall >= setup.targets["int8"].bar
    assert graph.widened > before


@pytest.mark.xfail(
    strict=False,
    reason="at its default rerank oversampling (16x), IVF-PQ finds the top 10 of a broad filter far from the "
    "query at recall ~0.43: those points sit where scores are densest, closer together than 4-bit codes "
    "resolve (64x: 0.96). int8 HNSW widens its rescore there (the test above); IVF-PQ does not yet",
)
def test_far_from_the_query_ivf_pq_at_default_oversampling(setup: Setup) -> None:
    seen, recall = _far_from_the_query(setup, "ivf_pq", None)
    assert seen == {f"{setup.targets['ivf_pq'].graph}_filtered"}
    assert recall >= setup.targets["ivf_pq"].bar


def test_a_datetime_range_beside_an_unindexed_key(setup: Setup) -> None:
    t = setup.targets["hnsw"]
    f = {
        "must": [
            {"key": "at", "range": {"gte": _iso(T0 + 86400 * 100, 2)}, "_epoch": {"gte": T0 + 86400 * 100}},
            {"key": "kwu", "match": {"any": ["k0", "k1"]}},
        ]
    }
    allowed = setup.world.matching(f)
    assert len(allowed) > THRESHOLD
    assert t.coll.count_where(_wire(f)) == len(allowed)
    _check_search(t, f, allowed, 0, 10)


def test_a_few_matches_are_scored_exactly_even_with_no_threshold(setup: Setup) -> None:
    """With no exact threshold, three matching points are still scored exactly: a walk scores at least
    its beam (ef) of nodes, so a filter matching fewer takes the exact plan, and all three come back."""
    t = setup.targets["walk"]
    few = [int(i) for i in setup.world.ids[[10, 500, 3000]]]
    flt = {"must": [{"has_id": few}]}
    seen = [_check_search(t, flt, setup.world.matching(flt), qi, 10) for qi in range(NQ)]
    assert set(seen) == {"exact_filtered"}, seen


@pytest.mark.parametrize("flt", [None, _n_below(600), _n_below(150)], ids=["none", "broad", "narrow"])
def test_a_limit_1_ivf_pq_search_reranks_a_full_shortlist(setup: Setup, flt: dict[str, Any] | None) -> None:
    """A limit-1 IVF-PQ search reranks a top-10 search's shortlist (`plans.RERANK_MIN_K`): with 16
    candidates, 4-bit codes lost the true best to near-ties in ~1 query of 5, filtered or not."""
    t = setup.targets["ivf_pq"]
    allowed = setup.world.ids if flt is None else setup.world.matching(flt)
    assert len(allowed) > 160  # more than the shortlist: an ANN plan, not an exact one
    found = 0
    for qi in range(NQ):
        q = t.queries[qi]
        wire = None if flt is None else _wire(flt)
        res = t.coll.search([Query(q, limit=1, filter=wire, with_payload=False)])[0]
        assert res.strategy == ("ivf_pq" if flt is None else "ivf_pq_filtered"), res.strategy
        found += int(res.hits[0].id) == t.truth(allowed, q)[0][0]
    assert found / NQ >= 0.95, found
