"""`query_points_groups`: the best hits grouped by a payload key's value, up to `group_size` per group.

A search for more candidates than the groups need runs, its hits are grouped in score order (a hit whose
key holds an array joins the group of each value, as in Qdrant), and when the groups are not yet full
and the search may have stopped short, it runs again for four times as many, up to `max_search_limit`.
Values are strings or integers; hits whose key holds neither join no group.
"""

from __future__ import annotations

from typing import Any

from index.contract import AnyCollection, Hit
from nestor_client.models import Filter
from server.qdrant.models import QueryGroupsRequest
from server.qdrant.points import scored
from server.qdrant.query import plan
from server.qdrant.wire import QdrantError
from server.settings import Settings

__all__ = ["groups"]


def _values(payload: dict[str, Any] | None, key: str) -> list[str | int]:
    node: Any = payload or {}
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    items = node if isinstance(node, list) else [node]
    return [v for v in items if isinstance(v, str | int) and not isinstance(v, bool)]


def _group(hits: list[Hit], key: str, limit: int, size: int) -> dict[str | int, list[Hit]]:
    out: dict[str | int, list[Hit]] = {}
    for h in hits:
        for v in dict.fromkeys(_values(h.payload, key)):
            if v in out:
                if len(out[v]) < size:
                    out[v].append(h)
            elif len(out) < limit:
                out[v] = [h]
    return out


def groups(
    coll: AnyCollection, req: QueryGroupsRequest, settings: Settings, scope: Filter | None
) -> list[dict[str, Any]]:
    """The groups as Qdrant's `PointGroup`s (run in a worker thread: it may search more than once)."""
    if req.with_lookup is not None:
        raise QdrantError("Bad request: with_lookup is not supported by Nestor")
    if req.query is None:
        raise QdrantError("Bad request: query_points_groups needs a query")
    limit, size, cap = req.limit or 10, req.group_size, settings.max_search_limit
    want = min(cap, limit * size * 2)
    while True:
        p = plan(coll, req.model_copy(update={"limit": want, "offset": 0}), settings, scope)
        if p.query is None:  # a pipeline tree: grouping needs one search it can widen
            raise QdrantError(
                "Bad request: query_points_groups over prefetch, fusion or sparse vectors is not supported"
            )
        p.query.with_payload = True  # grouping reads the key, whatever the response shows
        hits = coll.search([p.query])[0].hits
        found = _group(hits, req.group_by, limit, size)
        full = len(found) == limit and all(len(g) == size for g in found.values())
        if full or len(hits) < want or want == cap:
            break
        want = min(cap, want * 4)
    return [
        {"id": v, "hits": [scored(h, h.score + 0.0, req.with_payload, req.with_vector, coll) for h in g]}
        for v, g in found.items()
    ]
