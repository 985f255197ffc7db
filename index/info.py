"""What `GET /collections/{name}` reports for a local collection: per vector and in total.

Each vector reports its index (type, state, points indexed and pending, which backend serves it,
training details), its segments (the indexed part and the unindexed tail), and its memory by
component, measured from the structures themselves. The collection adds the payload store and the
id maps, sums the memory, and takes its status from its vectors: red while an indexer step keeps
failing, yellow while an index is being built, else green.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from index.backends.base import VectorIndex
from index.backends.ivfpq import IvfPqIndex
from index.dense import DenseField
from index.encoded import EncodedIndex
from index.factory import backend_name
from index.multivector import MultiVectorField
from index.sparse import SparseField
from index.usage import storage_usage
from index.widen import widens
from nestor_client.models import CollectionInfo, IndexInfo, IvfPqIndexConfig, MemoryUse, SegmentInfo, VectorInfo

if TYPE_CHECKING:
    from index.collection import Collection

__all__ = ["collection_info", "dense_info"]

_PARTS = ("vectors", "graph", "codes", "rerank", "transform")


def _index_memory(index: VectorIndex | None) -> dict[str, int]:
    """Measured RAM of an index by part: graph, codes, rerank store, transforms, id maps."""
    out = {"graph": 0, "codes": 0, "rerank": 0, "transform": 0, "ids": 0}
    if index is None:
        return out
    memory = getattr(index, "memory", None)
    if memory is not None:
        for k, v in memory().items():
            out[k] = out.get(k, 0) + int(v)
    else:
        out["codes"] = index.ram_bytes()
    return out


def dense_info(f: DenseField, paused: bool) -> VectorInfo:
    cfg = f.config
    st = f.state
    index = st.index
    n = f.labels.n
    pending = int(f.alive[st.upto : n].sum())  # with no index yet, every point waits for one
    indexed = index.count if index is not None else 0
    state = f.phase if pending or f.phase == "training" else "ready"
    extra: dict[str, Any] = {}
    if isinstance(cfg.index, IvfPqIndexConfig) and not cfg.compressed:
        ivf = index if isinstance(index, IvfPqIndex) else None
        extra.update(
            trained=ivf is not None,
            trained_on=ivf.trained_on if ivf else 0,
            spec=ivf.spec if ivf else None,
            train_threshold=cfg.index.train_threshold,
            code_bytes_per_vector=ivf.code_bytes_per_vector() if ivf else None,
        )
        if ivf is None:
            state = "untrained" if f.phase != "training" else "training"
    if f.plain_flat:  # an exact scan over everything: every point counts as indexed
        indexed, pending, state = f.count, 0, "ready"
    if isinstance(index, EncodedIndex):
        extra.update(
            spec=index.spec,
            trained=True,
            trained_on=index.trained_on,
            trained_at=index.trained_at,
            train_threshold=cfg.training.threshold,
            query_sample=len(f.query_sample),
        )
        if index.projection is not None:  # LeanVec-OOD: which projection the held-out check kept, and why
            extra.update(projection=index.projection)
        if widens(index):  # searches whose filter packed the top k tighter than the codes resolve (index/widen.py)
            extra.update(rescore_widened=int(index.inner._graph.widened))  # type: ignore[union-attr]
    elif cfg.compressed:
        extra.update(trained=False, train_threshold=cfg.training.threshold, spec=None, query_sample=len(f.query_sample))
        state = "untrained" if f.phase != "training" else "training"
    if paused:
        state = "paused"
    if f.last_error is not None:
        state = "failing"
    info = IndexInfo(
        type=cfg.index.type,
        state=state,
        indexed=indexed,
        pending=pending,
        error=f.last_error,
        backend=backend_name(index) if not f.plain_flat else "exact scan",
        quality=f.tuning.info() if f.tuning is not None else None,
        **extra,
    )
    parts = _index_memory(index)
    memory = {
        "vectors": MemoryUse(ram=f.vectors.ram_bytes(), disk=f.vectors.disk_bytes()),
        "graph": MemoryUse(ram=parts["graph"], disk=f.index_disk),  # the index's files are all counted here
        "codes": MemoryUse(ram=parts["codes"]),
        "rerank": MemoryUse(ram=parts["rerank"]),
        "transform": MemoryUse(ram=parts["transform"]),
        "ids": MemoryUse(ram=parts["ids"]),
    }
    rerank = "off"
    if cfg.compressed or isinstance(cfg.index, IvfPqIndexConfig):
        rerank = "int8 codes in RAM" if parts["rerank"] else "float32 vectors"
    placement = {
        "vectors": "disk (memory-mapped)"
        if cfg.on_disk
        else "disk (memory-mapped: over the RAM cap)"
        if f.vectors.on_disk
        else "RAM, and disk",
        "index": "RAM, saved to disk",
        "rerank": rerank,
    }
    segments = [SegmentInfo(type="indexed", points=indexed, labels_upto=st.upto)]
    if not f.plain_flat:
        segments.append(SegmentInfo(type="pending", points=pending))
    return VectorInfo(index=info, segments=segments, memory=memory, placement=placement)


def _multi_info(f: MultiVectorField, paused: bool) -> VectorInfo:
    mv = f.config.multivector
    assert mv is not None
    if f.fde is not None:
        out = dense_info(f.fde, paused)
    else:  # maxsim: exact over every document, nothing to index
        n = f.count
        out = VectorInfo(
            index=IndexInfo(type="maxsim", state="ready", indexed=n, pending=0, backend="exact MaxSim"),
            segments=[SegmentInfo(type="exact", points=n)],
            memory={},
            placement={"index": "none (exact MaxSim)"},
        )
    tokens = {  # the token store, reported with the index it reranks for
        "type": mv.type,
        "fde_dim": None if f.encoder is None else f.encoder.fde_dim,
        "token_dtype": f.tokens.dtype,
        "tokens": f.tokens.n_tokens,
        "bytes_per_token": f.tokens.bytes_per_token,
        "token_bytes": f.tokens.token_bytes(),
    }
    out.index = IndexInfo.model_validate({**out.index.model_dump(), "multivector": tokens})
    out.memory["tokens"] = MemoryUse(ram=f.tokens.ram_bytes(), disk=f.tokens.disk_bytes())
    return out


def _sparse_info(f: SparseField) -> VectorInfo:
    """The inverted index: points in the posting lists, and those in the tail (scored from their rows)."""
    p = f.postings
    n = f.labels.n
    pending = int(f.alive[p.upto : n].sum())
    index = IndexInfo.model_validate(
        {
            "type": "inverted",
            "state": "ready",
            "indexed": f.count - pending,
            "pending": pending,
            "backend": "nestor-sparse",
            "modifier": f.config.modifier,
            "terms": len(f.df),
            "entries": f.store.n_entries,
        }
    )
    return VectorInfo(
        index=index,
        segments=[SegmentInfo(type="indexed", points=f.count - pending), SegmentInfo(type="pending", points=pending)],
        memory={
            "sparse": MemoryUse(ram=f.store.ram_bytes(), disk=f.store.disk_bytes()),
            "postings": MemoryUse(ram=p.ram_bytes()),
        },
        placement={"sparse": "RAM (CSR files on disk)", "postings": "RAM (rebuilt at open)"},
    )


def collection_info(coll: Collection) -> CollectionInfo:
    paused = coll.indexing_paused
    vectors = {
        name: _multi_info(f, paused)
        if isinstance(f, MultiVectorField)
        else _sparse_info(f)
        if isinstance(f, SparseField)
        else dense_info(f, paused)
        for name, f in coll.fields.items()
    }
    main = vectors[coll.field(None).name if coll._default is not None else next(iter(vectors))]
    memory: dict[str, MemoryUse] = {}
    for v in vectors.values():
        for part, use in v.memory.items():
            slot = memory.setdefault(part, MemoryUse())
            slot.ram += use.ram
            slot.disk += use.disk
    for part in _PARTS:
        memory.setdefault(part, MemoryUse())
    memory["payload"] = MemoryUse(disk=coll.points.disk_bytes())
    ids = memory.setdefault("ids", MemoryUse())
    ids.ram += coll.labels.ram_bytes()
    payload_schema = coll.payload.info(coll.config.payload_schema)
    memory["payload_index"] = MemoryUse(ram=sum(p.ram for p in payload_schema.values()))
    states = {v.index.state for v in vectors.values()}
    status = "red" if "failing" in states else "yellow" if states & {"indexing", "training"} else "green"
    last_optimized = max((f.last_optimized or 0.0 for f in coll.dense_fields()), default=0.0) or None
    return CollectionInfo.model_validate(
        {
            "name": coll.name,
            "config": coll.config,
            "count": coll.count,
            "status": status,
            "seq": coll.seq,
            "index": main.index,
            "segments": main.segments,
            "memory": memory,
            "vectors": vectors,
            "placement": {**main.placement, "payload": "disk (SQLite)"},
            "last_write": coll.last_write,
            "last_optimized": last_optimized,
            "payload_schema": payload_schema,
            "usage": storage_usage(coll),
            "optimizer": coll.optimizer.status(),
        }
    )
