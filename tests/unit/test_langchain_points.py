"""LangChain documents as Nestor points and back, without a server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document

from nestor_client.integrations._langchain_points import PointLayout, prepare, similarity_to_relevance
from nestor_client.models import Record, ScoredPoint


def test_prepare_fills_missing_ids_and_metadata() -> None:
    texts, metas, ids = prepare(iter(["a", "b", "c"]), None, ["x", None, 7])
    assert texts == ["a", "b", "c"] and metas == [{}, {}, {}]
    assert ids[0] == "x" and ids[2] == 7 and isinstance(ids[1], str) and len(ids[1]) == 36
    meta = {"k": 1}
    _, metas, _ = prepare(["a"], [meta], None)
    assert metas == [meta] and metas[0] is not meta  # the caller's dict is never the one sent


@pytest.mark.parametrize(
    ("metadatas", "ids", "message"),
    [
        ([{}], None, "2 texts but 1 metadatas"),
        (None, ["x"], "2 texts but 1 ids"),
        (None, ["x", True], "not True"),
        (None, ["x", 1.5], "not 1.5"),
    ],
)
def test_prepare_refuses_what_does_not_fit(metadatas: Any, ids: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prepare(["a", "b"], metadatas, ids)


def test_points_and_documents_round_trip() -> None:
    layout = PointLayout("text", "meta", "dense")
    [point] = layout.points(["p0", "p1"], ["a", "b"], [{}, {"k": [1]}], [[0.5, 1.0]], start=1)
    assert point["id"] == "p1" and point["payload"] == {"text": "b", "meta": {"k": [1]}}
    assert point["vector"]["dense"].dtype == np.float32
    record = Record(id="p1", payload=point["payload"])
    assert layout.document(record) == Document(id="p1", page_content="b", metadata={"k": [1]})
    # a point written by another client, without the two keys, and an integer id
    assert layout.document(Record(id=7, payload={"title": "x"})) == Document(id="7", page_content="")


def test_mmr_needs_the_named_vector() -> None:
    layout = PointLayout("text", "meta", "dense")
    hits = [
        ScoredPoint(id=1, score=1.0, vector={"dense": [1.0, 0.0]}),
        ScoredPoint(id=2, score=0.9, vector={"dense": [1.0, 0.0]}),
        ScoredPoint(id=3, score=0.5, vector={"dense": [0.0, 1.0]}),
    ]
    assert [d.id for d in layout.mmr([1.0, 0.0], hits, k=2, lambda_mult=0.25)] == ["1", "3"]
    with pytest.raises(ValueError, match="no dense vector 'dense'"):
        layout.mmr([1.0, 0.0], [ScoredPoint(id=4, score=1.0, vector={"other": [1.0, 0.0]})], k=1, lambda_mult=0.5)


def test_relevance_is_clipped_to_the_unit_interval() -> None:
    assert similarity_to_relevance(1.0000001) == 1.0
    assert similarity_to_relevance(-1.2) == 0.0
    assert similarity_to_relevance(0.5) == 0.75
