"""LangChain documents as Nestor points and back: ids, the payload layout, the vectors MMR needs.

A document is one point: its id the point's id, its text and metadata under two payload keys, so that
metadata comes back exactly as it went in. Used by `nestor_client.integrations.langchain` only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from langchain_core.documents import Document
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from nestor_client.models import PointId, Record, ScoredPoint

__all__ = ["PointLayout", "prepare", "similarity_to_relevance"]


@dataclass(frozen=True, slots=True)
class PointLayout:
    """Where a document lives in a point: the payload keys of its text and metadata, and its vector's name
    (None: the collection's unnamed vector)."""

    content_key: str
    metadata_key: str
    vector_name: str | None

    def points(
        self,
        ids: list[PointId],
        texts: list[str],
        metadatas: list[dict[str, Any]],
        vectors: list[list[float]],
        start: int,
    ) -> list[dict[str, Any]]:
        """The points of texts `start`, `start + 1`, ... with their embeddings `vectors`."""
        points = []
        for i, vector in enumerate(vectors, start):
            vec = np.asarray(vector, dtype=np.float32)
            points.append(
                {
                    "id": ids[i],
                    "vector": vec if self.vector_name is None else {self.vector_name: vec},
                    "payload": {self.content_key: texts[i], self.metadata_key: metadatas[i]},
                }
            )
        return points

    def document(self, point: Record | ScoredPoint) -> Document:
        """The document of a point; a point written by another client without the keys reads as `""`, `{}`."""
        payload = point.payload or {}
        content = payload.get(self.content_key)
        metadata = payload.get(self.metadata_key)
        return Document(
            id=str(point.id),
            page_content=content if isinstance(content, str) else "",
            metadata=metadata if isinstance(metadata, dict) else {},
        )

    def scored(self, hits: list[ScoredPoint]) -> list[tuple[Document, float]]:
        return [(self.document(hit), hit.score) for hit in hits]

    def mmr(self, query: list[float], hits: list[ScoredPoint], k: int, lambda_mult: float) -> list[Document]:
        """LangChain's maximal marginal relevance over hits fetched with their vectors."""
        if not hits:
            return []
        vectors = [self._vector_of(hit) for hit in hits]
        picked = maximal_marginal_relevance(np.asarray(query, dtype=np.float32), vectors, lambda_mult, k)
        return [self.document(hits[i]) for i in picked]

    def _vector_of(self, hit: ScoredPoint) -> list[float]:
        vector = hit.vector.get(self.vector_name or "") if isinstance(hit.vector, dict) else hit.vector
        if not isinstance(vector, list) or (vector and not isinstance(vector[0], float | int)):
            raise ValueError(f"point {hit.id!r} has no dense vector {self.vector_name or ''!r} for MMR")
        return cast(list[float], vector)


def prepare(
    texts: Iterable[str], metadatas: list[dict[str, Any]] | None, ids: Sequence[str | int | None] | None
) -> tuple[list[str], list[dict[str, Any]], list[PointId]]:
    """The texts as a list, a metadata dict per text, and a point id per text (a UUID string where none).
    Raises ValueError, before anything is embedded or sent, when the lengths or an id do not fit."""
    texts = list(texts)
    n = len(texts)
    if metadatas is not None and len(metadatas) != n:
        raise ValueError(f"{n} texts but {len(metadatas)} metadatas")
    if ids is not None and len(ids) != n:
        raise ValueError(f"{n} texts but {len(ids)} ids")
    point_ids: list[PointId] = [
        i if i is not None else str(uuid.uuid4()) for i in (ids if ids is not None else [None] * n)
    ]
    for i in point_ids:
        if isinstance(i, bool) or not isinstance(i, str | int):
            raise ValueError(f"an id must be a string or a non-negative integer, not {i!r}")
    return texts, [dict(m) if m else {} for m in (metadatas or [{}] * n)], point_ids


def similarity_to_relevance(score: float) -> float:
    """A similarity in [-1, 1] (cosine; dot on unit vectors) as LangChain's relevance in [0, 1]; clipped,
    since float32 rounding can put an exact match a hair above 1."""
    return min(1.0, max(0.0, (1.0 + score) / 2.0))
