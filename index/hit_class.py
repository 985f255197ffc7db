"""`Hit` objects made natively: ten `Hit(id, score)` dataclass `__init__`s cost ~3-4 us of every search.

`index/_faiss_ivf.h` stores a hit's slots through their member descriptors, skipping the dataclass's
Python `__init__`. That is only sound while `Hit` stays a slots dataclass of id, score, then fields that
default to None, with no `__post_init__`: `HITS` is False otherwise (and without the native module), and
`make_hits` then calls the class.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from index.contract import Hit

try:
    from index import _graph
except ImportError:  # no native module (index/backends/graph.py says why)
    _graph = None  # type: ignore[assignment]

__all__ = ["HITS", "make_hits"]


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
