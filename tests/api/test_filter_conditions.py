"""`values_count` and `nested` over REST, against a brute-force Python oracle written here on random payloads.

Every filter is asked through `count` and through `scroll` (the ids, in order), unindexed (SQL) and with a
payload index on the keys that have one; plus bad input, which must be a 4xx that changes nothing.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nestor_client import NestorClient
from nestor_client.errors import ApiError

N = 400
_MISSING = object()
USERS = ["ann", "bob", "cy"]


# ---------------------------------------------------------------------------------------------
# Random payloads: tags (counted), reviews (an array of objects, sometimes not), each review's replies


def _scalar(rng: random.Random) -> Any:
    return rng.choice(["a", "b", 3, 2.5, True, None, {"k": 1}])


def _review(rng: random.Random, depth: int = 0) -> Any:
    if rng.random() < 0.12:
        return _scalar(rng)  # not an object: never matches a nested filter
    r: dict[str, Any] = {}
    if rng.random() < 0.9:
        r["user"] = rng.choice(USERS)
    if rng.random() < 0.85:
        r["score"] = rng.choice([0, 1, 2, 3, 4, 5, 2.5, "5"])
    if rng.random() < 0.6:
        r["tags"] = [rng.choice(["x", "y", "z"]) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.5:
        r["meta"] = {"ok": rng.random() < 0.5}
    if depth == 0 and rng.random() < 0.5:
        r["replies"] = [_review(rng, 1) for _ in range(rng.randint(0, 3))]
    return r


def _payload(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.05:
        return None
    p: dict[str, Any] = {"cat": rng.randint(0, 4)}
    roll = rng.random()
    if roll < 0.15:
        pass  # tags missing
    elif roll < 0.25:
        p["tags"] = None
    elif roll < 0.4:
        p["tags"] = _scalar(rng)
    else:
        p["tags"] = [_scalar(rng) for _ in range(rng.randint(0, 5))]
    roll = rng.random()
    if roll < 0.1:
        pass
    elif roll < 0.15:
        p["reviews"] = _review(rng)  # one object (or a scalar), not an array
    else:
        p["reviews"] = [_review(rng) for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.3:
        p["deep"] = {"list": [rng.randint(0, 2) for _ in range(rng.randint(0, 4))]}
    return p


# ---------------------------------------------------------------------------------------------
# The oracle: Qdrant's semantics, restated from the docs, independent of index/filters.py


def _get(doc: Any, key: str) -> Any:
    for seg in key.split("."):
        if not isinstance(doc, dict) or seg not in doc:
            return _MISSING
        doc = doc[seg]
    return doc


def _elements(v: Any) -> list[Any]:
    return [] if v is _MISSING else v if isinstance(v, list) else [v]


def _count(v: Any) -> int:
    return 0 if v is _MISSING or v is None else len(v) if isinstance(v, list) else 1


def _bounds_ok(n: float, b: dict[str, float]) -> bool:
    return (
        ("gt" not in b or n > b["gt"])
        and ("gte" not in b or n >= b["gte"])
        and ("lt" not in b or n < b["lt"])
        and ("lte" not in b or n <= b["lte"])
    )


def _is_num(e: Any) -> bool:
    return isinstance(e, int | float) and not isinstance(e, bool)


def _cond(doc: Any, c: dict[str, Any]) -> bool:
    if "must" in c or "should" in c or "must_not" in c:
        return _filter(doc, c)
    if "nested" in c:
        arr = _get(doc, c["nested"]["key"])
        return isinstance(arr, list) and any(isinstance(e, dict) and _filter(e, c["nested"]["filter"]) for e in arr)
    if "is_empty" in c:
        v = _get(doc, c["is_empty"]["key"])
        return v is _MISSING or v is None or v == []
    v = _get(doc, c["key"])
    if "values_count" in c:
        return _bounds_ok(_count(v), c["values_count"])
    if "range" in c:
        return any(_is_num(e) and _bounds_ok(e, c["range"]) for e in _elements(v))
    m = c["match"]
    if "any" in m:
        return any(isinstance(e, str) and e in m["any"] for e in _elements(v))
    want = m["value"]
    if isinstance(want, bool):
        return any(isinstance(e, bool) and e == want for e in _elements(v))
    if isinstance(want, str):
        return any(isinstance(e, str) and e == want for e in _elements(v))
    return any(_is_num(e) and e == want for e in _elements(v))


def _filter(doc: Any, f: dict[str, Any]) -> bool:
    must, should, must_not = f.get("must") or [], f.get("should") or [], f.get("must_not") or []
    return (
        all(_cond(doc, c) for c in must)
        and (not should or any(_cond(doc, c) for c in should))
        and not any(_cond(doc, c) for c in must_not)
    )


# ---------------------------------------------------------------------------------------------
# Random filters


def _values_count(rng: random.Random, key: str) -> dict[str, Any]:
    ops = rng.sample(["gt", "gte", "lt", "lte"], rng.randint(1, 2))
    return {"key": key, "values_count": {op: rng.randint(0, 4) for op in ops}}


def _inner(rng: random.Random, depth: int) -> dict[str, Any]:
    """A condition on a review (keys relative to it)."""
    kind = rng.choice(["user", "users", "score", "ok", "count", "empty", "nested"] if depth == 0 else ["user", "score"])
    if kind == "user":
        return {"key": "user", "match": {"value": rng.choice(USERS)}}
    if kind == "users":
        return {"key": "user", "match": {"any": rng.sample(USERS, 2)}}
    if kind == "score":
        return {"key": "score", "range": {rng.choice(["gte", "lt"]): rng.choice([1, 2.5, 3, 4])}}
    if kind == "ok":
        return {"key": "meta.ok", "match": {"value": rng.random() < 0.5}}
    if kind == "count":
        return _values_count(rng, "tags")
    if kind == "empty":
        return {"is_empty": {"key": "score"}}
    return {"nested": {"key": "replies", "filter": _inner_filter(rng, depth + 1)}}


def _inner_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    f: dict[str, Any] = {"must": [_inner(rng, depth) for _ in range(rng.randint(1, 2))]}
    if rng.random() < 0.4:
        f["must_not"] = [_inner(rng, depth)]
    if rng.random() < 0.3:
        f["should"] = [_inner(rng, depth) for _ in range(2)]
    return f


def _random_filter(rng: random.Random) -> dict[str, Any]:
    kind = rng.random()
    if kind < 0.35:
        cond = _values_count(rng, rng.choice(["tags", "reviews", "deep.list", "cat", "nope"]))
    elif kind < 0.85:
        cond = {"nested": {"key": "reviews", "filter": _inner_filter(rng)}}
    else:
        cond = {"must": [_values_count(rng, "tags"), {"nested": {"key": "reviews", "filter": _inner_filter(rng)}}]}
    clause = rng.choice(["must", "must_not", "should"])
    f: dict[str, Any] = {clause: [cond]}
    if rng.random() < 0.3:
        f.setdefault("must", []).append({"key": "cat", "match": {"value": rng.randint(0, 4)}})
    return f


# ---------------------------------------------------------------------------------------------


def _load(c: NestorClient, seed: int) -> list[dict[str, Any] | None]:
    rng = random.Random(seed)
    pays = [_payload(rng) for _ in range(N)]
    c.create_collection("f", dim=4)
    c.upsert("f", ids=list(range(N)), vectors=np.ones((N, 4), np.float32), payloads=pays)
    return pays


def _scroll_ids(c: NestorClient, f: dict[str, Any] | None, page: int = 37) -> list[Any]:
    out: list[Any] = []
    offset: Any = None
    while True:
        points, offset = c.scroll("f", f, limit=page, offset=offset, with_payload=False)
        out += [p.id for p in points]
        if offset is None:
            return out


def _check_against_oracle(c: NestorClient, pays: list[dict[str, Any] | None], seed: int, n: int) -> None:
    rng = random.Random(seed)
    matched = 0
    for _ in range(n):
        f = _random_filter(rng)
        want = [i for i, p in enumerate(pays) if _filter(p if p is not None else {}, f)]
        matched += 0 < len(want) < N
        assert c.count("f", f) == len(want), f
        assert _scroll_ids(c, f) == want, f
    assert matched >= n // 3  # the random filters are not all trivially empty or full


def test_values_count_and_nested_match_the_oracle(client: NestorClient) -> None:
    pays = _load(client, seed=1)
    _check_against_oracle(client, pays, seed=2, n=120)


def test_the_same_answers_with_payload_indexes_on_the_keys(client: NestorClient) -> None:
    """values_count on an indexed key (keyword, integer, over arrays) is answered from the index's value
    counts, with the oracle's answers, also after overwrites and deletes; nested stays a payload scan."""
    pays = _load(client, seed=3)
    for key, schema in (("tags", "keyword"), ("cat", "integer"), ("deep.list", "integer")):
        assert client.create_payload_index("f", key, schema)
    _check_against_oracle(client, pays, seed=4, n=80)
    q = np.ones(4, np.float32)
    for key in ("tags", "cat", "deep.list"):
        for bounds in ({"gte": 2}, {"lt": 1}, {"gt": 0, "lte": 1}):
            f = {"must": [{"key": key, "values_count": bounds}]}
            assert "payload_scan" not in client.search("f", q, filter=f).strategy, f
            assert client.count("f", f) == sum(1 for p in pays if _filter(p or {}, f)), f
    assert client.search("f", q, filter={"must": [{"key": "reviews", "values_count": {"gte": 2}}]}).strategy.endswith(
        "+payload_scan"
    )
    # writes move the counts: overwrite a third of the points with new random payloads, delete some more
    rng = random.Random(5)
    moved = rng.sample(range(N), N // 3)
    for i in moved:
        pays[i] = _payload(rng)
    client.upsert("f", ids=moved, vectors=np.ones((len(moved), 4), np.float32), payloads=[pays[i] for i in moved])
    gone = {"must": [{"key": "tags", "values_count": {"gte": 4}}]}
    n_gone = sum(1 for p in pays if p is not None and _filter(p, gone))
    assert n_gone and client.delete("f", filter=gone).deleted == n_gone
    left = {i: p for i, p in enumerate(pays) if p is None or not _filter(p, gone)}
    for f in (
        {"must": [{"key": "tags", "values_count": {"gte": 2}}]},
        {"must_not": [{"key": "deep.list", "values_count": {"lt": 2}}]},
        {"should": [{"key": "tags", "values_count": {"lte": 1}}, {"key": "cat", "values_count": {"gt": 0}}]},
    ):
        want = [i for i, p in left.items() if _filter(p or {}, f)]
        assert "payload_scan" not in client.search("f", q, filter=f).strategy
        assert client.count("f", f) == len(want), f
        assert _scroll_ids(client, f) == want, f
    # an indexed condition beside the nested one still gives the oracle's answer
    g = {
        "must": [
            {"key": "cat", "match": {"value": 2}},
            {"nested": {"key": "reviews", "filter": {"must": [{"key": "user", "match": {"value": "ann"}}]}}},
        ]
    }
    want = [i for i, p in left.items() if _filter(p or {}, g)]
    assert want and client.count("f", g) == len(want)
    hits = client.search("f", q, filter=g, limit=N)
    assert sorted(h.id for h in hits) == want
    assert hits.strategy.endswith("+payload_scan")


def test_nested_needs_one_element_to_satisfy_the_whole_filter(client: NestorClient) -> None:
    client.create_collection("f", dim=4)
    pays: list[dict[str, Any] | None] = [
        {"reviews": [{"user": "ann", "score": 1}, {"user": "bob", "score": 5}]},  # ann and 5, not on one review
        {"reviews": [{"user": "ann", "score": 5}]},
        {"reviews": {"user": "ann", "score": 5}},  # an object, not an array
        {"reviews": [["ann", 5], "ann"]},
    ]
    client.upsert("f", ids=[0, 1, 2, 3], vectors=np.ones((4, 4), np.float32), payloads=pays)
    inner = {"must": [{"key": "user", "match": {"value": "ann"}}, {"key": "score", "range": {"gte": 5}}]}
    assert _scroll_ids(client, {"must": [{"nested": {"key": "reviews", "filter": inner}}]}) == [1]
    flat = {"must": [{"key": "reviews.user", "match": {"value": "ann"}}]}  # no a[].b flattening
    assert client.count("f", flat) == 1  # only the object form has reviews.user
    not_ann_review = {"must_not": [{"key": "user", "match": {"value": "ann"}}]}
    not_ann = {"must": [{"nested": {"key": "reviews", "filter": not_ann_review}}]}
    assert _scroll_ids(client, not_ann) == [0]  # bob's review


def test_bad_input_is_4xx_and_changes_nothing(client: NestorClient) -> None:
    _load(client, seed=5)
    client.create_payload_index("f", "cat", "integer")
    before = client.get_collection("f")
    nested = {"key": "reviews", "filter": {"must": [{"key": "user", "match": {"value": "ann"}}]}}
    bad: list[dict[str, Any]] = [
        {"must": [{"key": "tags", "values_count": {"lt": "3"}}]},
        {"must": [{"key": "tags", "values_count": {"lt": 2.5}}]},
        {"must": [{"key": "tags", "values_count": {"gte": -1}}]},
        {"must": [{"key": "tags", "values_count": {"lt": True}}]},
        {"must": [{"key": "tags", "values_count": {}}]},
        {"must": [{"key": "tags", "values_count": {"lt": 3}, "match": {"value": "a"}}]},
        {"must": [{"nested": {"key": "cat", "filter": nested["filter"]}}]},  # an integer index: not an array
        {"must": [{"nested": {"key": "reviews"}}]},
        {"must": [{"nested": {"key": "reviews", "filter": 3}}]},
        {"must": [{"nested": {"key": "a..b", "filter": nested["filter"]}}]},
        {"must": [{"nested": {"key": "reviews", "filter": {"must": [{"has_id": [1]}]}}}]},
    ]
    for f in bad:
        calls: list[Callable[[], object]] = [
            functools.partial(client.count, "f", f),
            functools.partial(client.scroll, "f", f),
            functools.partial(client.search, "f", np.ones(4, np.float32), filter=f),
            functools.partial(client.delete, "f", filter=f),
        ]
        for call in calls:
            with pytest.raises(ApiError) as err:
                call()
            assert 400 <= err.value.status < 500, f
    after = client.get_collection("f")
    assert after.count == N and after.seq == before.seq
    # the same nested filter on an unindexed array key is fine, and deletes what it matches
    gone = client.count("f", {"must": [{"nested": nested}]})
    assert 0 < gone < N
    assert client.delete("f", filter={"must": [{"nested": nested}]}).deleted == gone
    assert client.count("f", {"must": [{"nested": nested}]}) == 0
