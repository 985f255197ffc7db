"""Collection configs between the two dialects: Qdrant's create body to Nestor's `CollectionConfig`, and a
Nestor collection to Qdrant's `CollectionInfo` as `qdrant-client` parses it.

Mapping: `size` -> `dim`; `Cosine`/`Dot`/`Euclid` -> `cosine`/`dot`/`l2` (`Manhattan` is refused);
`hnsw_config` `m`/`ef_construct` -> the HNSW index's `m`/`ef_construction` (`m: 0`, no graph, -> a flat
index); scalar `int8` quantization -> `quantize: int8`, binary -> `quantize: binary`; `on_disk` ->
`on_disk`; a `max_sim` multivector -> MUVERA with exact MaxSim rescoring. Collection-level `hnsw_config`
and `quantization_config` apply to every vector that sets none of its own, as in Qdrant.
"""

from __future__ import annotations

from typing import Any

from index.contract import AnyCollection
from nestor_client.models import CollectionConfig, Metric, VectorConfig
from server.qdrant.models import CreateCollection, HnswConfigDiff, VectorParams
from server.qdrant.pipeline import sparse_configs, sparse_info
from server.qdrant.wire import QdrantError

__all__ = ["to_config", "to_info"]

_METRIC = {"Cosine": Metric.cosine, "Dot": Metric.dot, "Euclid": Metric.l2}
_DISTANCE = {v: k for k, v in _METRIC.items()}
_DATATYPES = {None, "float32", "float16", "uint8"}  # stored as float32 by Nestor: harmless
FULL_SCAN_THRESHOLD = 10_000


def to_config(body: CreateCollection) -> CollectionConfig:
    if body.init_from is not None:
        raise QdrantError("Bad request: init_from is not supported: copy the points with scroll and upsert")
    if not body.vectors and not body.sparse_vectors:
        raise QdrantError("Bad request: give vectors: {size, distance} or named vectors {name: {size, distance}}")
    shards: dict[str, Any] = {"shards": body.shard_number or 1, "replicas": body.replication_factor or 1}
    if body.sparse_vectors:
        shards["sparse_vectors"] = sparse_configs(body.sparse_vectors)
    if isinstance(body.vectors, VectorParams):
        return CollectionConfig.model_validate({**_vector(body.vectors, body, ""), **shards})
    # no dense vector (`vectors` left out or `{}`) with sparse ones: a sparse-only collection
    named = {name: VectorConfig.model_validate(_vector(v, body, name)) for name, v in (body.vectors or {}).items()}
    return CollectionConfig.model_validate({"vectors": named, **shards})


def _vector(v: VectorParams, body: CreateCollection, name: str) -> dict[str, Any]:
    what = f"vector {name!r}: " if name else ""
    if v.distance not in _METRIC:
        raise QdrantError(f"Bad request: {what}distance {v.distance} is not supported by Nestor (Cosine, Dot, Euclid)")
    if v.datatype not in _DATATYPES:
        raise QdrantError(f"Bad request: {what}datatype {v.datatype} is not supported by Nestor")
    out: dict[str, Any] = {"dim": v.size, "metric": _METRIC[v.distance].value, "index": _index(v.hnsw_config, body)}
    if v.on_disk:
        out["on_disk"] = True
    quant = v.quantization_config if v.quantization_config is not None else body.quantization_config
    if quant is not None:
        out["quantize"] = _quantize(quant, what)
    if v.multivector_config is not None:
        if v.multivector_config.get("comparator", "max_sim") != "max_sim":
            raise QdrantError(f"Bad request: {what}only the max_sim multivector comparator is supported")
        if quant is not None:
            raise QdrantError(f"Bad request: {what}quantization of multivectors is not supported by Nestor")
        # MUVERA projects tokens to 16 dimensions; smaller tokens are kept whole
        out["multivector"] = {"type": "muvera"} | ({"d_proj": None} if v.size <= 16 else {})
    return out


def _index(own: HnswConfigDiff | None, body: CreateCollection) -> dict[str, Any]:
    hnsw: dict[str, Any] = {}
    for diff in (body.hnsw_config, own):  # the vector's own settings win
        if diff is not None:
            hnsw.update(diff.model_dump(exclude_none=True))
    if hnsw.get("m") == 0:
        return {"type": "flat"}
    out: dict[str, Any] = {"type": "hnsw"}
    if "m" in hnsw:
        if not 2 <= hnsw["m"] <= 128:
            raise QdrantError(f"Bad request: hnsw_config.m {hnsw['m']} is outside what Nestor builds (0, or 2..128)")
        out["m"] = hnsw["m"]
    if "ef_construct" in hnsw:
        out["ef_construction"] = min(hnsw["ef_construct"], 4096)
    return out


def _quantize(q: dict[str, Any], what: str) -> dict[str, Any]:
    if "scalar" in q:
        kind = (q["scalar"] or {}).get("type", "int8")
        if kind != "int8":
            raise QdrantError(f"Bad request: {what}scalar quantization type {kind} is not supported (int8 is)")
        return {"type": "int8"}
    if "binary" in q:
        return {"type": "binary"}
    kind = next(iter(q), "?")
    raise QdrantError(f"Bad request: {what}{kind} quantization is not supported by Nestor (scalar int8 and binary are)")


def _vector_params(v: VectorConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"size": v.dim, "distance": _DISTANCE[v.metric], "on_disk": v.on_disk}
    if v.index.type == "hnsw":
        out["hnsw_config"] = {"m": v.index.m, "ef_construct": v.index.ef_construction}
    if v.quantize is not None:
        out["quantization_config"] = (
            {"scalar": {"type": "int8", "always_ram": True}} if v.quantize.type == "int8" else {"binary": {}}
        )
    if v.multivector is not None:
        out["multivector_config"] = {"comparator": "max_sim"}
    return out


def to_info(coll: AnyCollection) -> dict[str, Any]:
    """Qdrant's `CollectionInfo` of a Nestor collection."""
    info = coll.info()
    config = info.config
    fields = config.vector_fields()
    vectors: Any = {n: _vector_params(v) for n, v in fields.items()} if config.named else _vector_params(fields[""])
    first = next(iter(fields.values()), None)
    m, ef = 16, 100  # a sparse-only collection: Qdrant's defaults
    if first is not None:
        m, ef = (first.index.m, first.index.ef_construction) if first.index.type == "hnsw" else (0, 100)
    indexed = sum(v.index.indexed for v in info.vectors.values()) if info.vectors else info.index.indexed
    schema = {
        key: {"data_type": p.data_type.value, "points": p.points}
        | ({"params": {"type": "keyword", "is_tenant": True}} if p.is_tenant else {})
        for key, p in info.payload_schema.items()
    }
    return {
        "status": info.status if info.status in ("green", "yellow", "red") else "grey",
        "optimizer_status": "ok",
        "indexed_vectors_count": indexed,
        "points_count": info.count,
        "segments_count": max(len(info.segments), 1),
        "config": {
            "params": {
                "vectors": vectors,
                **({"sparse_vectors": sparse_info(config)} if config.sparse_vectors else {}),
                "shard_number": config.shards,
                "replication_factor": config.replicas,
                "write_consistency_factor": 1,
                "on_disk_payload": True,
            },
            "hnsw_config": {"m": m, "ef_construct": ef, "full_scan_threshold": FULL_SCAN_THRESHOLD},
            "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            "quantization_config": None,
        },
        "payload_schema": schema,
    }
