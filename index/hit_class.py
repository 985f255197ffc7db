"""`Hit` objects made natively: ten `Hit(id, score)` dataclass `__init__`s cost ~3-4 us of every search.

`index/_faiss_ivf.h` stores a hit's slots through their member descriptors, skipping the dataclass's
Python `__init__`. That is only sound while `Hit` stays a slots dataclass of id, score, then fields that
default to None, with no `__post_init__`: `HITS` is False otherwise (and without the native module), and
`make_hits` then calls the class. Also which queries the one-call paths serve (`plain`, `to_normalise`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from index.backends.base import F32
from index.contract import Hit, Query
from nestor_client.models import Metric

try:
    from index import _graph
except ImportError:  # no native module (index/backends/graph.py says why)
    _graph = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from index.dense import DenseField

__all__ = ["HITS", "make_hits", "plain", "to_normalise"]


def _register() -> bool:
    if _graph is None or not hasattr(_graph, "set_hit_class"):
        return False
    fields = dataclasses.fields(Hit)
    names = [f.name for f in fields]
    if (
        names[:2] != ["id", "score"]
        or any(f.default is not None for f in fields[2:])
        or tuple(names) != getattr(Hit, "__slots__", None)
        or hasattr(Hit, "__post_init__")
    ):
        return False
    _graph.set_hit_class(Hit, names)
    return True


HITS = _register()


def make_hits(ids: list[Any], scores: list[Any]) -> list[Hit]:
    """`[Hit(i, s) for i, s in zip(ids, scores)]` for two lists of one length."""
    if HITS and hasattr(_graph, "make_hits"):
        return _graph.make_hits(ids, scores)
    return list(map(Hit, ids, scores))


def plain(field: DenseField, q: Query) -> bool:
    """A query the one-call paths serve (`native.answer`, `ivf_search.answer`): its whole result is ids and
    scores from the top (no offset, threshold, payload or vectors), on a field that keeps no queries
    (`search._remember`), with no exact scan or funnel (`check_params` has its error) asked."""
    p = q.params
    return not (
        q.offset
        or q.score_threshold is not None
        or q.with_payload
        or q.with_vector
        or not HITS
        or field.query_sample.reservoir_size
        or (p is not None and (p.exact or p.funnel is not None))
    )


def to_normalise(field: DenseField, v: Any) -> F32 | None:
    """A cosine query of the field's shape not of unit norm (the one-call paths refuse it), normalised by
    `prepare_one` exactly as the general path does (which raises for a zero vector); None for any other."""
    if field.metric is not Metric.cosine or v.__class__ is not np.ndarray or v.shape != (field.dim,):
        return None
    sq = float(v.dot(v))
    return field.prepare_one(v)[0] if abs(sq - 1.0) > 1e-6 else None  # NaN: False, the general path says why
