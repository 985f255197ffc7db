"""An ingest job's source made explicit before it runs: the collection's default vector checked, the format,
path and fields resolved (so a resumed job reads the file exactly as its first run did), and the field map
the readers take."""

from __future__ import annotations

from index.contract import AnyCollection
from index.errors import NestorError
from nestor_client.models import IngestFormat, IngestSource
from server.embedding import NoEncoder
from server.ingest.errors import InvalidSource
from server.ingest.roots import IngestRoots
from server.ingest.rows import Fields
from server.ingest.sources import infer_format

__all__ = ["default_target", "resolve_source", "source_fields"]


def default_target(coll: AnyCollection) -> AnyCollection:
    """Ingest jobs fill the collection's default vector, which must be dense, or (a sparse-only
    collection) its sparse vectors."""
    if not coll.config.vector_fields() and coll.config.sparse_fields():
        return coll
    try:
        _, vcfg = coll.vector_config(None)
    except NestorError:
        raise InvalidSource(
            f"collection {coll.name!r} has several named vectors: ingest jobs fill a default one"
        ) from None
    if vcfg.multivector is not None:
        raise InvalidSource(f"collection {coll.name!r} is multi-vector; ingest jobs load dense vectors")
    return coll


def _text_capable(coll: AnyCollection) -> bool:
    """Whether a text row fills the collection: its default vector's encoder, or (sparse only) a sparse one's."""
    if not coll.config.vector_fields():
        return any(s.encoder is not None for s in coll.config.sparse_fields().values())
    return coll.vector_config(None)[1].encoder is not None


def resolve_source(spec: IngestSource, coll: AnyCollection, roots: IngestRoots) -> IngestSource:
    """The source with its defaults made explicit, so a resumed job reads it exactly as the first run did."""
    path = str(roots.confine(spec.path))  # first: a path outside the roots is 403, whatever else is wrong
    fmt = infer_format(spec)
    text, vector = spec.text_field, spec.vector_field
    if text is not None and vector is not None:
        raise InvalidSource("give text_field or vector_field, not both")
    if fmt is IngestFormat.npy:
        if text is not None or vector is not None:
            raise InvalidSource("a .npy source is the vectors itself: it takes no text_field or vector_field")
    elif text is None and vector is None and not (spec.sparse_fields and not coll.config.vector_fields()):
        text, vector = ("text", None) if _text_capable(coll) else (None, "vector")
    if text is not None and not _text_capable(coll):
        raise NoEncoder(coll.name)
    if vector is not None and not coll.config.vector_fields():
        raise InvalidSource(f"collection {coll.name!r} has only sparse vectors: give text_field or sparse_fields")
    sparse = coll.config.sparse_fields()
    for name in spec.sparse_fields or {}:
        if name not in sparse:
            raise InvalidSource(f"sparse_fields: {name!r} is not a sparse vector of {coll.name!r} ({sorted(sparse)})")
    if fmt is IngestFormat.npy and not coll.config.vector_fields():
        raise InvalidSource(
            f"collection {coll.name!r} has only sparse vectors: a .npy source of dense ones cannot fill it"
        )
    bm25 = text is not None and any(sv.encoder is not None for sv in sparse.values())
    if coll.distributed and (spec.sparse_fields or bm25):  # Ray Data's path fills the dense vector only
        raise InvalidSource(f"collection {coll.name!r} is sharded: its ingest jobs fill the dense vector only")
    if spec.sparse_fields and fmt is IngestFormat.npy:
        raise InvalidSource("a .npy source holds dense vectors only: sparse_fields go with JSON Lines and Parquet")
    return spec.model_copy(update={"format": fmt, "path": path, "text_field": text, "vector_field": vector})


def source_fields(spec: IngestSource) -> Fields:
    payload = tuple(spec.payload_fields) if spec.payload_fields is not None else None
    sparse = tuple(sorted((spec.sparse_fields or {}).items()))
    return Fields(id=spec.id_field, text=spec.text_field, vector=spec.vector_field, payload=payload, sparse=sparse)
