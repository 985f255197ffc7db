"""`modifier: idf` on a sharded collection: document frequencies over every shard, not each shard's own.

A shard alone knows how many of *its* points have a term. Weighing a query by those would score the same
point differently depending on where it lives, and the merged lists would not be the ranking of one
collection. So before a search on an IDF sparse vector, the router asks one replica of every shard for
its live count and the query's document frequencies (one round trip for the whole batch), sums them, and
sends each query with the sums (`Query.sparse_stats`); every shard then weighs the query exactly as an
unsharded collection holding all the points would (`SparseField.query_weights`).

Under `partial` with a shard down, the sums cover the shards that answered: the same points the merged
hits come from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from index.contract import Query, SparseStats, SparseVec
from index.sparse import check_sparse
from nestor_client.models import SparseVectorConfig

__all__ = ["with_global_idf"]

FanOut = Callable[..., tuple[list[Any], list[int]]]


def with_global_idf(
    queries: list[Query], sparse: dict[str, SparseVectorConfig], fan_out: FanOut, *, partial: bool
) -> list[Query]:
    """`queries`, each one on an IDF sparse vector given the whole collection's statistics.

    `fan_out(call, partial=...)` runs `call(replica, min_op)` on one replica of every shard
    (`ShardedCollection._fan_out`); a malformed query is refused here (InvalidVector) before any shard
    is asked."""
    asks: list[tuple[int, str, SparseVec]] = []
    for i, q in enumerate(queries):
        cfg = sparse.get(q.using) if q.using is not None else None
        if q.sparse is None or q.sparse_stats is not None or cfg is None or cfg.modifier != "idf":
            continue
        # sorted once here, so that the summed frequencies line up with the terms every shard sees
        asks.append((i, q.using, check_sparse(q.sparse, f"vector {q.using!r}: query")))  # type: ignore[arg-type]
    if not asks:
        return queries
    sent = [(using, sv) for _, using, sv in asks]
    answers, _ = fan_out(lambda rep, op: rep.actor.sparse_stats.remote(sent, op), partial=partial)
    out = list(queries)
    for j, (i, _, sv) in enumerate(asks):
        parts: list[SparseStats] = [a[j] for a in answers if a is not None]
        df = np.zeros(len(sv.indices), np.int64)
        for p in parts:
            df += p.df
        out[i] = dataclasses.replace(queries[i], sparse=sv, sparse_stats=SparseStats(sum(p.n for p in parts), df))
    return out
