"""Where points live and how shard answers combine: a stable hash of the id, and an exact top-k merge.

Both are pure functions (no ray), unit-testable on their own.

Placement: `shard_of(id, n)` is the first 8 bytes of BLAKE2b over the id's canonical text (the same
text the store of record keys on, so `1` and `"1"` are different points and may land on different
shards), modulo n. It is stable across processes, machines and Python versions (unlike `hash()`).

Merge: every shard answers the query for `limit + offset` hits with offset 0. The global top
`limit + offset` is among the union of those lists (a point in the global top-k is in its own
shard's top-k), so sorting the union and cutting it is exact, filters included: each shard has
already applied the filter and returned `limit + offset` matches whenever that many exist there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from index.contract import Hit, PointIdT
from index.storage import encode_pid

__all__ = ["group_by_shard", "merge_hits", "merge_pages", "scroll_key", "shard_of"]


def shard_of(pid: PointIdT, shards: int) -> int:
    """The shard that owns point `pid` among `shards` shards."""
    if shards == 1:
        return 0
    digest = hashlib.blake2b(encode_pid(pid).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


def group_by_shard(ids: Sequence[PointIdT], shards: int) -> list[list[int]]:
    """For each shard, the positions in `ids` of the points it owns (in input order)."""
    groups: list[list[int]] = [[] for _ in range(shards)]
    for i, pid in enumerate(ids):
        groups[shard_of(pid, shards)].append(i)
    return groups


def merge_hits(parts: Sequence[Sequence[Hit]], limit: int, offset: int, *, lower_is_better: bool) -> list[Hit]:
    """The global hits `offset .. offset + limit` from each shard's best `limit + offset` hits.

    Ties in score are broken by shard order, then by each shard's own order, so the merge is deterministic."""
    flat = [(h.score, s, i, h) for s, part in enumerate(parts) for i, h in enumerate(part)]
    if lower_is_better:
        flat.sort(key=lambda t: (t[0], t[1], t[2]))
    else:
        flat.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [t[3] for t in flat[offset : offset + limit]]


def scroll_key(pid: PointIdT) -> tuple[int, int | str]:
    """Scroll order: integer ids ascending, then string ids (as `index/scroll.py` orders one collection)."""
    return (0, pid) if isinstance(pid, int) else (1, pid)


def merge_pages(pages: list[tuple[list[Hit], PointIdT | None]], limit: int) -> tuple[list[Hit], PointIdT | None]:
    """One page from every shard's page at the same offset: the first `limit` hits by id, and the next offset.

    Every point a shard did not return comes at or after its `next_page_offset`, so the next page starts at
    the smallest of the hits left over and the shards' next offsets."""
    hits = sorted((h for page, _ in pages for h in page), key=lambda h: scroll_key(h.id))
    rest = [h.id for h in hits[limit:]] + [nxt for _, nxt in pages if nxt is not None]
    return hits[:limit], min(rest, key=scroll_key, default=None)
