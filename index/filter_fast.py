"""The commonest filter, one condition on a ready payload index, answered without the general evaluator.

A tenant, a language, a tag: most production filters are one `must` condition on one indexed key. The
general path (`PayloadIndexes.check`, then `select`) walks the filter tree twice, validates the condition
against a kept empty index of its type, then evaluates it again on the real one: about 6 us of a 28 us
search for `tenant == t7` at 100k points (benchmarks/FILTERS.md). Here the condition is evaluated once, on
the ready index, under the indexes' read lock. That is the same check: an index validates a condition
before it reads anything (a string against an integer index, a bad datetime: `InvalidFilter`), so the real
index raises exactly what the empty one would.

A search's commonest case, a string `match` on a keyword index matching a few points (a tenant), is
`select_few`: its answer, serialised for the native scan, is kept in the indexes' memo until their next
write (`PayloadIndexes.version`), since a tenant's searches repeat and the lookup, the lock, `& live` and
the serialisation were a sixth of such a search's CPU time.

Anything else (several conditions, `should`, `must_not`, `has_id`, `is_empty`, `values_count`, a key with
no ready index, or one whose ready index is not the schema's type) is None: the caller takes the general
path, which answers it or falls back to SQL.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyroaring import BitMap

from index.payload import PayloadIndexes
from index.payload_index import PostingIndex
from nestor_client.models import FieldCondition, Filter, MatchValue, PayloadSchema, PayloadSchemaType, schema_type

S = PayloadSchemaType

__all__ = ["select_few", "select_one"]

# keyword values a collection's memo keeps answers for; past it, it starts again (each answer is at most
# `most` labels: ~10 KB at the default 5,000, so at most ~10 MB, and a tenant of ~100 points ~0.2 KB)
MEMO_MAX = 1024


def _single(flt: Filter) -> FieldCondition | None:
    """The filter's one condition, when it is a lone `must` on a field's values (no count)."""
    if flt.should or flt.must_not:
        return None
    must = flt.must
    if must is None or len(must) != 1:
        return None
    c = must[0]
    if type(c) is not FieldCondition or c.values_count is not None:
        return None
    return c


def select_one(payload: PayloadIndexes, flt: Filter, schema: Mapping[str, PayloadSchema]) -> BitMap | None:
    """The live labels matching `flt` when it is one `match` or `range` condition on a key with a ready
    index of the schema's type; None when it is not (the general path then answers it)."""
    c = _single(flt)
    if c is None:
        return None
    s = schema.get(c.key)
    if s is None:
        return None
    want = schema_type(s)
    m = c.match
    lock = payload.lock
    lock._acquire_read()  # as `with lock.read()`, without its two Python calls (this is the search's hot path)
    try:
        fi = payload.fields.get(c.key)  # read under the lock: a concurrent drop removes it
        if fi is None or getattr(fi, "schema", None) is not want:
            return None
        if want is S.keyword and type(m) is MatchValue and type(m.value) is str and isinstance(fi, PostingIndex):
            # what `PostingIndex.evaluate` does for it, with nothing to validate: a string on a keyword index
            got = fi.postings.get(m.value)
            return got & payload.live if got is not None else BitMap()
        return fi.evaluate(c) & payload.live
    finally:
        lock._release_read()


def select_few(
    payload: PayloadIndexes, flt: Filter, schema: Mapping[str, PayloadSchema], most: int
) -> bytes | BitMap | None:
    """A search's `select_one` for the commonest filter of a few matches, a string `match` on a keyword
    index (a tenant): its live labels as roaring bytes when at most `most`, kept in the indexes' memo until
    their next write (a tenant's searches repeat: the lookup, its lock, `& live` and the serialisation were
    a sixth of such a search's CPU time); as a BitMap when more. None: not that filter (use `select_one`)."""
    c = _single(flt)
    if c is None:
        return None
    m = c.match
    if type(m) is not MatchValue or type(m.value) is not str:
        return None
    s = schema.get(c.key)
    if s is None or schema_type(s) is not S.keyword:
        return None
    key = (c.key, m.value)
    got = payload.memo.get(key)
    if got is not None and got[0] == payload.version and got[1] == most:  # no write since: still the answer
        return got[2]
    lock = payload.lock
    lock._acquire_read()
    try:
        version = payload.version  # read with the bitmaps, under the lock: the memo's entry is of this state
        fi = payload.fields.get(c.key)
        if fi is None or getattr(fi, "schema", None) is not S.keyword or not isinstance(fi, PostingIndex):
            return None
        posting = fi.postings.get(m.value)
        bm = posting & payload.live if posting is not None else BitMap()
    finally:
        lock._release_read()
    if len(bm) > most:
        return bm
    raw = bm.serialize()
    if len(payload.memo) >= MEMO_MAX:
        payload.memo.clear()
    payload.memo[key] = (version, most, raw)
    return raw
