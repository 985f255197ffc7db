"""A collection's encoder, wired to the write and search paths.

`index/` knows nothing of encoders: a collection only persists the `EncoderSpec` in its config. This
module checks that spec when a collection is created (the encoder exists, its config is valid, its kind
and dimension fit the collection), and turns texts into vectors for upserts, searches and ingest jobs.
Encoders are shared per normalised spec (`encoders.get_encoder`), so a model loads once per process.

Everything here may block for seconds (a model load, a forward pass): call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import encoders
from encoders import Embeddings, Encoder, EncoderKind
from index.backends.base import F32
from index.contract import CollectionReader, SparseVec
from index.errors import InvalidConfig, NestorError, Unprocessable
from nestor_client.models import (
    CollectionConfig,
    EncoderSpec,
    Point,
    SearchRequest,
    SparseVector,
    SparseVectorConfig,
    VectorConfig,
)

__all__ = [
    "EncoderMismatch",
    "NoEncoder",
    "check_encoder",
    "collection_encoder",
    "embed",
    "embed_point_texts",
    "embed_texts_into",
    "has_encoder",
    "embed_queries",
]


class EncoderMismatch(NestorError):
    """The encoder asked for, or the one the collection's spec now builds, disagrees with the collection."""

    status = 409
    type = "encoder_mismatch"


class NoEncoder(Unprocessable):
    type = "no_encoder"

    def __init__(self, name: str, vector: str | None = None) -> None:
        which = f"vector {vector!r} of collection {name!r}" if vector else f"collection {name!r}"
        super().__init__(
            f"{which} has no encoder, so it takes vectors, not text; "
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


def _expected_kind(config: VectorConfig) -> EncoderKind:
    return EncoderKind.multivector if config.multivector is not None else EncoderKind.dense


def _check_vector(name: str, vcfg: VectorConfig, old: VectorConfig | None) -> EncoderSpec | None:
    """The vector's encoder spec normalised, once the encoder is known to fit the vector."""
    what = f"vector {name!r}: " if name else ""
    if vcfg.encoder is None:
        if old is not None and old.encoder is not None:
            raise EncoderMismatch(f"{what}the collection exists with {_describe(old.encoder)}; this request names none")
        return None
    spec = encoders.normalize_spec(vcfg.encoder.name, vcfg.encoder.config)
    wire = EncoderSpec(name=spec.name, config=spec.config)
    if old is not None and old.encoder != wire:
        raise EncoderMismatch(what + _difference(old.encoder, wire))
    encoder = encoders.get_encoder(spec)
    kind = _expected_kind(vcfg)
    if encoder.kind is not kind:
        raise InvalidConfig(
            f"{what}{_describe(wire)} yields {encoder.kind.value} embeddings, but this vector stores "
            f"{kind.value} ones; pick a {kind.value} encoder"
        )
    if encoder.dim != vcfg.dim:
        raise InvalidConfig(
            f"{what}{_describe(wire)} yields {encoder.dim}-dimensional vectors but the vector's dim is "
            f"{vcfg.dim}; set dim to {encoder.dim}"
        )
    return wire


def has_encoder(config: CollectionConfig) -> bool:
    dense = any(v.encoder is not None for v in config.vector_fields().values())
    return dense or any(s.encoder is not None for s in config.sparse_fields().values())


def _check_sparse(name: str, scfg: SparseVectorConfig, old: SparseVectorConfig | None) -> SparseVectorConfig:
    """A sparse vector's config with its encoder spec normalised, once the encoder is known to be sparse."""
    if scfg.encoder is None:
        if old is not None and old.encoder is not None:
            raise EncoderMismatch(
                f"vector {name!r}: the collection exists with {_describe(old.encoder)}; this names none"
            )
        return scfg
    spec = encoders.normalize_spec(scfg.encoder.name, scfg.encoder.config)
    wire = EncoderSpec(name=spec.name, config=spec.config)
    if old is not None and old.encoder != wire:
        raise EncoderMismatch(f"vector {name!r}: " + _difference(old.encoder, wire))
    encoder = encoders.get_encoder(spec)
    if encoder.kind is not EncoderKind.sparse:
        raise InvalidConfig(
            f"vector {name!r}: {_describe(wire)} yields {encoder.kind.value} embeddings, but this vector is "
            "sparse; pick a sparse encoder (e.g. bm25)"
        )
    return scfg.model_copy(update={"encoder": wire})


def _sparse_configs(config: CollectionConfig, existing: CollectionConfig | None) -> dict[str, SparseVectorConfig]:
    old = existing.sparse_fields() if existing is not None else {}
    return {name: _check_sparse(name, s, old.get(name)) for name, s in config.sparse_fields().items()}


def check_encoder(config: CollectionConfig, existing: CollectionConfig | None = None) -> CollectionConfig:
    """`config` with every vector's encoder spec normalised, once each encoder is known to fit its vector.

    Builds the encoders (loading their models), since only a built encoder knows its dimension.
    `existing` is the config of a collection of that name, if any: naming another encoder is a mismatch.
    """
    old = existing.vector_fields() if existing is not None else {}
    specs = {name: _check_vector(name, v, old.get(name)) for name, v in config.vector_fields().items()}
    sparse = {"sparse_vectors": _sparse_configs(config, existing)} if config.sparse_vectors else {}
    if config.vectors is None:
        return config.model_copy(update={"encoder": specs[""], **sparse})
    vectors = {name: v.model_copy(update={"encoder": specs[name]}) for name, v in config.vectors.items()}
    return config.model_copy(update={"vectors": vectors, **sparse})


def sparse_encoder(coll: CollectionReader, name: str) -> Encoder:
    """The encoder of a collection's sparse vector (NoEncoder when it has none)."""
    spec = coll.config.sparse_fields()[name].encoder
    if spec is None:
        raise NoEncoder(coll.name, name)
    return encoders.get_encoder(spec.name, spec.config)


def collection_encoder(coll: CollectionReader, using: str | None = None) -> Encoder:
    """The encoder of a collection's vector, checked again: a local model directory may have changed."""
    if using is not None and using in coll.config.sparse_fields():
        return sparse_encoder(coll, using)
    name, vcfg = coll.vector_config(using)
    spec = vcfg.encoder
    if spec is None:
        raise NoEncoder(coll.name, name)
    encoder = encoders.get_encoder(spec.name, spec.config)
    if encoder.dim != vcfg.dim:
        raise EncoderMismatch(
            f"collection {coll.name!r}, vector {name!r} has dim {vcfg.dim}, but its {_describe(spec)} now yields "
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
    if encoder.kind is EncoderKind.sparse:
        sparse: list[Any] = [None] * len(texts)
        for chunk, part in zip(chunks, parts, strict=True):
            for i, vec in zip(chunk, part.sparse(), strict=True):
                sparse[i] = vec
        return Embeddings(encoder.kind, encoder.dim, sparse, errors)
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


def embed_point_texts(coll: CollectionReader, points: Sequence[Point], vectors: dict[str, list[Any]]) -> None:
    """Fill, for every point that carries text, each vector that has an encoder (in `vectors`, in place).

    A batch is atomic, so one text that cannot be embedded fails the request, naming the point."""
    embed_texts_into(coll, [p.id for p in points], [p.text for p in points], vectors)


def embed_texts_into(
    coll: CollectionReader, ids: Sequence[Any], texts: Sequence[str | None], vectors: dict[str, list[Any]]
) -> None:
    """`embed_point_texts` of a columnar batch: `texts[i]` (None: no text) is point `ids[i]`'s."""
    rows = [i for i, t in enumerate(texts) if t is not None]
    if not rows:
        return
    fields = coll.config.vector_fields()
    targets = [name for name, v in fields.items() if v.encoder is not None]
    targets += [name for name, s in coll.config.sparse_fields().items() if s.encoder is not None]
    if not targets:
        raise NoEncoder(coll.name, None)
    chosen = [texts[i] or "" for i in rows]
    for name in targets:
        encoder = collection_encoder(coll, name)
        emb = embed(encoder, chosen)
        if emb.errors:
            row, why = min(emb.errors.items())
            raise Unprocessable(f"point {ids[rows[row]]!r}: cannot embed its text: {why}")
        column = vectors.setdefault(name, [None] * len(texts))
        if encoder.kind is EncoderKind.sparse:
            for i, (idx, val) in zip(rows, emb.sparse(), strict=True):
                column[i] = SparseVec(idx, val)
            continue
        got = emb.dense() if encoder.kind is EncoderKind.dense else emb.multivector()
        for i, v in zip(rows, got, strict=True):
            column[i] = v


def embed_queries(coll: CollectionReader, searches: Sequence[SearchRequest]) -> list[SearchRequest]:
    """The searches, with each `text` replaced by its query embedding from the searched vector's encoder."""
    rows = [i for i, s in enumerate(searches) if s.text is not None]
    if not rows:
        return list(searches)
    out = list(searches)
    by_vector: dict[str | None, list[int]] = {}
    for i in rows:
        by_vector.setdefault(searches[i].using, []).append(i)
    for using, members in by_vector.items():
        encoder = collection_encoder(coll, using)
        emb = embed(encoder, [searches[i].text or "" for i in members], query=True)
        emb.raise_for_errors()
        if encoder.kind is EncoderKind.sparse:
            for i, (idx, val) in zip(members, emb.sparse(), strict=True):
                vec = SparseVector.model_construct(indices=idx.tolist(), values=val.tolist())  # valid by construction
                out[i] = searches[i].model_copy(update={"vector": vec, "text": None})
            continue
        if encoder.kind is EncoderKind.dense:
            for i, vec in zip(members, emb.dense(), strict=True):
                out[i] = searches[i].model_copy(update={"vector": vec.astype("<f4").tobytes(), "text": None})
        else:
            for i, toks in zip(members, emb.multivector(), strict=True):
                raw = np.ascontiguousarray(toks, dtype="<f4").tobytes()
                out[i] = searches[i].model_copy(update={"multivector": raw, "text": None})
    return out
