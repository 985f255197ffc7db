"""The columnar upsert (`{"batch": {...}}`) with `texts`: the batch's columns as one vector per point, and
each text embedded into every vector that has an encoder (dense or sparse, e.g. bm25), as a point's `text`.

The columns come from `server.convert.batch_vectors`; the engine's upsert then takes the whole batch or
nothing (a text that cannot be embedded fails the request before anything is written).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from index.batch import default_vector
from index.contract import CollectionReader
from index.errors import InvalidVector
from nestor_client.models import Batch
from server.embedding import embed_texts_into

__all__ = ["embed_batch_texts"]


def embed_batch_texts(coll: CollectionReader, batch: Batch, columns: Any) -> dict[str, list[Any]]:
    """The batch's vectors by name, one entry per point (None: none), with its texts embedded (blocking:
    run it in the threadpool)."""
    texts = batch.texts
    assert texts is not None
    n = len(batch.ids)
    if len(texts) != n:
        raise InvalidVector(f"{n} ids but {len(texts)} texts")
    if isinstance(columns, np.ndarray):  # the default vector's matrix
        name = default_vector(coll.config)
        assert name is not None  # batch_vectors refuses a bare matrix without a default vector
        columns = {name: columns}
    out: dict[str, list[Any]] = {}
    for name, col in columns.items():
        if len(col) != n:
            raise InvalidVector(f"{n} ids but {len(col)} vectors named {name!r}")
        out[name] = list(col)  # a matrix's rows, or a sparse column
    embed_texts_into(coll, batch.ids, texts, out)
    return out
