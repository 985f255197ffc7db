"""The commonest filter, one condition on a ready payload index, answered without the general evaluator.

A tenant, a language, a tag: most production filters are one `must` condition on one indexed key. The
general path (`PayloadIndexes.check`, then `select`) walks the filter tree twice, validates the condition
against a kept empty index of its type, then evaluates it again on the real one: about 6 us of a 28 us
search for `tenant == t7` at 100k points (benchmarks/FILTERS.md). Here the condition is evaluated once, on
the ready index, under the indexes' read lock. That is the same check: an index validates a condition
before it reads anything (a string against an integer index, a bad datetime: `InvalidFilter`), so the real
index raises exactly what the empty one would.

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

__all__ = ["select_one"]


def select_one(payload: PayloadIndexes, flt: Filter, schema: Mapping[str, PayloadSchema]) -> BitMap | None:
    """The live labels matching `flt` when it is one `match` or `range` condition on a key with a ready
    index of the schema's type; None when it is not (the general path then answers it)."""
    if flt.should or flt.must_not:
        return None
    must = flt.must
    if must is None or len(must) != 1:
        return None
    c = must[0]
    if type(c) is not FieldCondition or c.values_count is not None:
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
