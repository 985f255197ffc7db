"""A collection's encoder, wired to the write and search paths.

`index/` knows nothing of encoders: a collection only persists the `EncoderSpec` in its config. This
module checks that spec when a collection is created (the encoder exists, its config is valid, its kind
and dimension fit the collection), and turns texts into vectors for upserts, searches and ingest jobs.
Encoders are shared per normalised spec (`encoders.get_encoder`), so a model loads once per process.

Everything here may block for seconds (a model load, a forward pass): call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import encoders
from encoders import Embeddings, Encoder, EncoderKind
from index.backends.base import F32
from index.errors import InvalidConfig, NestorError, Unprocessable
from index.multivector import AnyCollection
from nestor_client.models import CollectionConfig, EncoderSpec, Point, SearchRequest
from server.convert import points_matrix

__all__ = [
    "EncoderMismatch",
    "NoEncoder",
    "check_encoder",
    "collection_encoder",
    "embed",
    "embed_points",
    "embed_queries",
]


class EncoderMismatch(NestorError):
    """The encoder asked for, or the one the collection's spec now builds, disagrees with the collection."""

    status = 409
    type = "encoder_mismatch"


class NoEncoder(Unprocessable):
    type = "no_encoder"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"collection {name!r} has no encoder, so it takes vectors, not text; "
            'create it with "encoder": {"name": ...} to send text'
        )


def _describe(spec: EncoderSpec | None) -> str:
    if spec is None:
        return "no encoder"
    model = spec.config.get("model")
    return f"encoder {spec.name!r}" + (f" (model {model!r})" if model else "")


def _difference(old: EncoderSpec | None, new: EncoderSpec) -> str:
    if old is None or old.name != new.name:
        return f"the collection exists with {_describe(old)}; this request names {_describe(new)}"
    keys = sorted(k for k in old.config.keys() | new.config.keys() if old.config.get(k) != new.config.get(k))
    had = ", ".join(f"{k}={old.config.get(k)!r}" for k in keys)
    asked = ", ".join(f"{k}={new.config.get(k)!r}" for k in keys)
    return f"the collection's encoder {old.name!r} has {had}; this request asks for {asked}"


def _expected_kind(config: CollectionConfig) -> EncoderKind:
    return EncoderKind.multivector if config.multivector is not None else EncoderKind.dense


def check_encoder(config: CollectionConfig, existing: CollectionConfig | None = None) -> CollectionConfig:
    """`config` with its encoder spec normalised, once the encoder is known to fit the collection.

    Builds the encoder (loading its model), since only a built encoder knows its dimension.
    `existing` is the config of a collection of that name, if any: naming another encoder is a mismatch.
    """
    if config.encoder is None:
        if existing is not None and existing.encoder is not None:
            raise EncoderMismatch(f"the collection exists with {_describe(existing.encoder)}; this request names none")
        return config
    spec = encoders.normalize_spec(config.encoder.name, config.encoder.config)
    wire = EncoderSpec(name=spec.name, config=spec.config)
    if existing is not None and existing.encoder != wire:
        raise EncoderMismatch(_difference(existing.encoder, wire))
    encoder = encoders.get_encoder(spec)
    kind = _expected_kind(config)
    if encoder.kind is not kind:
        raise InvalidConfig(
            f"{_describe(wire)} yields {encoder.kind.value} embeddings, but this collection stores "
            f"{kind.value} ones; pick a {kind.value} encoder"
        )
    if encoder.dim != config.dim:
        raise InvalidConfig(
            f"{_describe(wire)} yields {encoder.dim}-dimensional vectors but the collection's dim is "
            f"{config.dim}; set dim to {encoder.dim}"
        )
    return config.model_copy(update={"encoder": wire})


def collection_encoder(coll: AnyCollection) -> Encoder:
    """The collection's encoder, checked again: a local model directory may have changed since creation."""
    spec = coll.config.encoder
    if spec is None:
        raise NoEncoder(coll.name)
    encoder = encoders.get_encoder(spec.name, spec.config)
    if encoder.dim != coll.dim:
        raise EncoderMismatch(
            f"collection {coll.name!r} has dim {coll.dim}, but its {_describe(spec)} now yields "
            f"{encoder.dim}-dimensional vectors"
        )
    return encoder


def embed(encoder: Encoder, texts: Sequence[str], *, query: bool = False) -> Embeddings:
    """Embed any number of texts, split at the encoder's `max_batch_size`; row errors keep their row numbers."""
    call = encoder.embed_query if query else encoder.embed_documents
    step = max(1, encoder.max_batch_size)
    if len(texts) <= step:
        return call(texts)
    # Similar lengths in each call: transformer batches pad to their longest text.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]) if isinstance(texts[i], str) else 0)
    chunks = [order[i : i + step] for i in range(0, len(order), step)]
    parts = [call([texts[i] for i in chunk]) for chunk in chunks]
    errors = {chunk[row]: why for chunk, part in zip(chunks, parts, strict=True) for row, why in part.errors.items()}
    if encoder.kind is EncoderKind.dense:
        dense = np.empty((len(texts), encoder.dim), dtype=np.float32)
        for chunk, part in zip(chunks, parts, strict=True):
            dense[chunk] = part.dense()
        return Embeddings(encoder.kind, encoder.dim, dense, errors)
    multi: list[F32] = [np.empty((0, encoder.dim), np.float32)] * len(texts)
    for chunk, part in zip(chunks, parts, strict=True):
        for i, vecs in zip(chunk, part.multivector(), strict=True):
            multi[i] = vecs
    return Embeddings(encoder.kind, encoder.dim, multi, errors)


def _dense(coll: AnyCollection, encoder: Encoder) -> None:
    if encoder.kind is not EncoderKind.dense:
        raise Unprocessable(f"collection {coll.name!r}: text for multivector collections is not supported yet")


def embed_points(coll: AnyCollection, points: Sequence[Point]) -> F32:
    """The (n, dim) matrix of an upsert in which some points carry text. A batch is atomic, so one
    text that cannot be embedded fails the request, naming the point."""
    encoder = collection_encoder(coll)
    _dense(coll, encoder)
    rows = [i for i, p in enumerate(points) if p.text is not None]
    emb = embed(encoder, [points[i].text or "" for i in rows])
    if emb.errors:
        row, why = min(emb.errors.items())
        raise Unprocessable(f"point {points[rows[row]].id!r}: cannot embed its text: {why}")
    mat = np.empty((len(points), coll.dim), dtype=np.float32)
    mat[rows] = emb.dense()
    others = [i for i, p in enumerate(points) if p.text is None]
    if others:
        mat[others] = points_matrix([points[i] for i in others], coll.dim)
    return mat


def embed_queries(coll: AnyCollection, searches: Sequence[SearchRequest]) -> list[SearchRequest]:
    """The searches, with each `text` replaced by its query embedding (as float32 bytes)."""
    rows = [i for i, s in enumerate(searches) if s.text is not None]
    if not rows:
        return list(searches)
    encoder = collection_encoder(coll)
    _dense(coll, encoder)
    emb = embed(encoder, [searches[i].text or "" for i in rows], query=True)
    emb.raise_for_errors()
    out = list(searches)
    for row, vec in zip(rows, emb.dense(), strict=True):
        out[row] = searches[row].model_copy(update={"vector": vec.astype("<f4").tobytes(), "text": None})
    return out
