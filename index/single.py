"""One unfiltered dense query, ranked the way a user's single search is: the native executor, else the
planner's fast path, else the general planner.

`index/search.py` serves single searches with it, and calibration's clock (`index/knob_clock.py`) times
candidate knobs with it, so a recall target's choice is timed on the path users' searches take."""

from __future__ import annotations

from typing import TYPE_CHECKING

from index import native, planner
from index.backends.base import F32
from index.contract import Query

if TYPE_CHECKING:
    from index.dense import DenseField

__all__ = ["rank"]


def rank(field: DenseField, q: Query, mat: F32) -> planner.Ranked:
    """The top `q.limit + q.offset` of the prepared query `mat` [1, dim], as user ids and scores."""
    k = q.limit + q.offset
    ranked = native.search(field, mat, k, q.params, None) or planner.search_fast(field, q, mat)
    if ranked is None:
        hits, strategy = planner.plan(field, mat, k, q.params, None)
        labels, scores = planner.to_user(field, hits.labels[0], hits.scores[0])
        ranked = labels, scores, strategy
    return ranked
