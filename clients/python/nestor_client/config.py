"""Collection configuration: what `PUT /collections/{name}` takes (`CollectionConfig`), each vector's
settings (index, encoder, multivector, reduce, quantize, rerank, training) and the payload index schemas."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from nestor_client._common import InputModel
from nestor_client.payload_schema import (  # re-exported: their home was this module
    PayloadIndexParams as PayloadIndexParams,
)
from nestor_client.payload_schema import PayloadIndexRequest as PayloadIndexRequest
from nestor_client.payload_schema import PayloadSchema as PayloadSchema
from nestor_client.payload_schema import PayloadSchemaType as PayloadSchemaType
from nestor_client.payload_schema import has_value_graphs as has_value_graphs
from nestor_client.payload_schema import is_tenant as is_tenant
from nestor_client.payload_schema import parse_schema as parse_schema
from nestor_client.payload_schema import plain_schema as plain_schema
from nestor_client.payload_schema import schema_json as schema_json
from nestor_client.payload_schema import schema_type as schema_type


class _Model(InputModel):
    """Every input model of this module (unknown keys are an error)."""


# A list of floats, or base64 of little-endian float32 (JSON), or raw float32 bytes (msgpack).
VectorInput = list[float] | str | bytes

# A document's or query's token vectors: a list of vectors, or one base64 string (JSON) or raw
# bytes (msgpack) of its n * dim little-endian float32 values, row after row.
MultiVectorInput = list[list[float]] | str | bytes


class Metric(StrEnum):
    cosine = "cosine"
    dot = "dot"
    l2 = "l2"


# ---------------------------------------------------------------------------------------------
# Collection configuration


class FlatIndexConfig(_Model):
    """Exact search over every vector: the oracle, and right for small collections."""

    type: Literal["flat"] = "flat"


class HnswIndexConfig(_Model):
    """HNSW graph: hnswlib for plain float vectors, Nestor's own graph over compressed ones (int8 codes,
    reduced vectors). `ef` is the default search beam, overridable per query; `m` up to 128."""

    type: Literal["hnsw"] = "hnsw"
    m: int = Field(16, ge=2, le=128)
    ef_construction: int = Field(200, ge=4, le=4096)
    ef: int = Field(64, ge=1, le=32768)


class IvfPqIndexConfig(_Model):
    """faiss IVF with product-quantized codes, reranked from the full-precision vectors.

    `nlist` and `m` are chosen from the data when omitted (nlist about 2*sqrt(n), m = dim/4 at
    4 bits). The index trains once `train_threshold` vectors exist (exact search until then) and
    retrains in the background when the collection grows `retrain_growth` times past its
    training size.
    """

    type: Literal["ivf_pq"] = "ivf_pq"
    nlist: int | None = Field(None, ge=1, le=1 << 20)
    m: int | None = Field(None, ge=1, le=4096)
    nbits: Literal[4, 8] = 4
    nprobe: int = Field(96, ge=1, le=1 << 20)
    oversampling: float = Field(16.0, ge=1.0, le=1000.0)
    rescore: bool = True
    train_threshold: int = Field(5000, ge=64)
    retrain_growth: float = Field(4.0, gt=1.0)


IndexConfig = Annotated[FlatIndexConfig | HnswIndexConfig | IvfPqIndexConfig, Field(discriminator="type")]

TokenDtype = Literal["float32", "float16", "int8"]


class MuveraConfig(_Model):
    """Multi-vector documents through MUVERA fixed dimensional encodings (FDE), with exact MaxSim rescoring.

    Each document's token vectors become one FDE of `r_reps * 2**k_sim * d_proj` dimensions (or
    `final_dim`), which the collection's `index` serves. A search takes `oversampling * limit` FDE
    candidates and reranks them by exact MaxSim over the stored tokens (`token_dtype`). `seed` fixes
    every random draw; the drawn matrices are stored with the collection. `dim` is the token dimension.

    The defaults are the fastest setting measured to reach recall@10 0.95 against exact MaxSim on real
    token embeddings (benchmarks/MUVERA.md): few, wide SimHash buckets (k_sim 2, d_proj 32; a d_proj
    above `dim` keeps the tokens whole), int8 tokens, 40x candidates, and an IVF-PQ FDE index when the
    vector names no `index`.
    """

    type: Literal["muvera"] = "muvera"
    k_sim: int = Field(2, ge=0, le=10)
    d_proj: int | None = Field(32, ge=1, le=4096)
    r_reps: int = Field(20, ge=1, le=512)
    final_dim: int | None = Field(None, ge=1, le=65536)
    seed: int = Field(42, ge=0, le=2**32 - 1)
    fill_empty: bool = True
    token_dtype: TokenDtype = "int8"
    max_tokens: int = Field(512, ge=1, le=16384)
    oversampling: float = Field(40.0, ge=1.0, le=1000.0)
    # below this many documents a search may score every document exactly, when that costs less than
    # MUVERA's candidates (strategy `maxsim`); 0 always takes MUVERA's candidates
    exact_below: int = Field(10_000, ge=0, le=10_000_000)


class MaxSimConfig(_Model):
    """Multi-vector documents searched by exact MaxSim over every document: the oracle, for small collections."""

    type: Literal["maxsim"] = "maxsim"
    token_dtype: TokenDtype = "float16"
    max_tokens: int = Field(512, ge=1, le=16384)


MultiVectorConfig = Annotated[MuveraConfig | MaxSimConfig, Field(discriminator="type")]


class EncoderSpec(_Model):
    """A collection's text encoder: a name in the `nestor.encoders` registry and that encoder's config.

    The server stores it normalised (defaults filled in), so `{"name": "hash"}` and
    `{"name": "hash", "config": {"dim": 256}}` name the same encoder."""

    name: str = Field(min_length=1, max_length=128)
    config: dict[str, Any] = Field(default_factory=dict)


class FunnelStage(_Model):
    """One Matryoshka funnel stage: rescore the survivors on their first `dim` coordinates, keep `limit`."""

    dim: int = Field(ge=1, le=65536)
    limit: int = Field(ge=1, le=100_000)


class LeanVecReduceConfig(_Model):
    """LeanVec linear reduction to `dim`; the ANN index is built on the reduced vectors.

    `mode="id"` learns a PCA of the collection's data. `mode="ood"` learns a query map and a data map
    from the data and a query sample, for queries that look unlike the documents; the sample comes
    from `POST .../queries/sample` and, with `query_reservoir`, from the collection's recent queries
    (a uniform reservoir of `reservoir_size`). The maps refit at the next optimization.
    `rescale` (mode "id" only) scales each reduced vector back to the norm of its centred full vector,
    so the reduced score also estimates the part outside the kept directions: better candidates for the
    rerank (OOD's held-out check already tries it).
    """

    type: Literal["leanvec"] = "leanvec"
    dim: int = Field(ge=1, le=65536)
    mode: Literal["id", "ood"] = "id"
    solver: Literal["closed_form", "frank_wolfe"] = "closed_form"
    query_reservoir: bool = False
    reservoir_size: int = Field(10_000, ge=16, le=1_000_000)
    rescale: bool = False

    @model_validator(mode="after")
    def _rescale_id_only(self) -> LeanVecReduceConfig:
        if self.rescale and self.mode != "id":
            raise ValueError("rescale applies to mode 'id' (mode 'ood' chooses it on held-out queries)")
        return self


class MatryoshkaReduceConfig(_Model):
    """Truncate to the first `dim` coordinates and renormalise; `rotate="pca"` rotates first (PCA-Matryoshka).

    `funnel` stages run after the index's shortlist, each on a longer prefix, before the final rerank."""

    type: Literal["matryoshka"] = "matryoshka"
    dim: int = Field(ge=1, le=65536)
    rotate: Literal["pca"] | None = None
    funnel: list[FunnelStage] = Field(default_factory=list, max_length=8)


ReduceConfig = Annotated[LeanVecReduceConfig | MatryoshkaReduceConfig, Field(discriminator="type")]


class BinaryQuantizeConfig(_Model):
    """Sign codes of the centred vectors, searched by Hamming distance in a faiss binary index.

    `bits=2` adds a residual plane. `query="asymmetric"` rescores the Hamming shortlist with the float
    query against the codes before the full-precision rerank. The codes are the only per-vector data
    the search itself keeps in RAM."""

    type: Literal["binary"] = "binary"
    bits: Literal[1, 2] = 1
    query: Literal["hamming", "asymmetric"] = "hamming"


class Int8QuantizeConfig(_Model):
    """Per-dimension int8 scalar codes (4x smaller); with `index.type="hnsw"`, Nestor's own graph over them."""

    type: Literal["int8"] = "int8"


QuantizeConfig = Annotated[BinaryQuantizeConfig | Int8QuantizeConfig, Field(discriminator="type")]


class RerankConfig(_Model):
    """How compressed candidates are reranked.

    `oversampling` candidates per result are taken from the compressed index (default: chosen per
    codec) and rescored exactly. `store="float32"` rescores with the full vectors (in RAM, or memory-
    mapped with `on_disk`); `store="int8"` keeps int8 codes of them in RAM for the rescore, so the
    float32 vectors can stay on disk."""

    enabled: bool = True
    oversampling: float | None = Field(None, ge=1.0, le=1000.0)
    store: Literal["float32", "int8"] = "float32"


class TrainingConfig(_Model):
    """When learned transforms (reduce, quantize) are fitted: after `threshold` points, and again in the
    background whenever the collection has grown `refit_growth` times since the last fit."""

    threshold: int = Field(2048, ge=64)
    refit_growth: float = Field(2.0, gt=1.0)


class QualityConfig(_Model):
    """A recall target Nestor meets by itself: at each index build or refit it measures recall@k against
    exact search and picks the cheapest `ef`, `nprobe` and `oversampling` that meet `recall_target`; the
    live recall probe then raises (or slowly lowers) them. A query's own `params` still win."""

    recall_target: float = Field(gt=0.0, lt=1.0)
    k: int = Field(10, ge=1, le=100)  # the recall@k that is measured and met
    max_ef: int = Field(2048, ge=8, le=32768)  # the most a graph's beam may be raised to
    max_oversampling: float = Field(64.0, ge=1.0, le=1000.0)
    queries: int = Field(1000, ge=20, le=5000)  # calibration queries, and the reservoir of recent ones kept for it


VECTOR_NAME = r"^[A-Za-z0-9_.-]{0,64}$"  # "" is the default (unnamed) vector
SPARSE_NAME = r"^[A-Za-z0-9_.-]{1,64}$"  # sparse vectors are always named


class SparseVectorConfig(_Model):
    """One sparse vector of a point (`{"indices": [...], "values": [...]}`), scored by dot product on an
    inverted index. `modifier: "idf"` multiplies each query weight by the term's inverse document
    frequency, ln((N - df + 0.5) / (df + 0.5) + 1), kept current under writes (Qdrant's modifier).
    `encoder` (e.g. `{"name": "bm25"}`) lets points and searches carry text that fills this vector."""

    modifier: Literal["idf"] | None = None
    encoder: EncoderSpec | None = None


_PER_VECTOR = (
    "dim",
    "metric",
    "index",
    "encoder",
    "multivector",
    "reduce",
    "quantize",
    "rerank",
    "training",
    "on_disk",
    "quality",
)


def _check_vector(cfg: VectorConfig | CollectionConfig, dim: int) -> None:
    """The checks one vector's settings must pass, in either the named or the top-level form."""
    red, quant, index = cfg.reduce, cfg.quantize, cfg.index
    if red is not None:
        if red.dim >= dim:
            raise ValueError(f"reduce.dim must be below dim={dim}, got {red.dim}")
        if isinstance(red, MatryoshkaReduceConfig):
            last = red.dim
            for st in red.funnel:
                if not last < st.dim <= dim:
                    raise ValueError("funnel dims must increase, from above reduce.dim up to dim")
                last = st.dim
    if isinstance(quant, Int8QuantizeConfig) and isinstance(index, IvfPqIndexConfig):
        raise ValueError("ivf_pq already quantizes its codes: use quantize with a flat or hnsw index")
    if cfg.multivector is not None and cfg.quality is not None:
        raise ValueError("quality does not apply to multi-vector fields yet")
    if cfg.multivector is not None and (red is not None or quant is not None):
        raise ValueError("reduce and quantize do not apply to multi-vector fields yet")


class _VectorSettings(_Model):
    """What one vector of a point is configured with, besides its dimension: shared by a named vector
    (`VectorConfig`) and the top-level single-vector form of `CollectionConfig`."""

    metric: Metric = Metric.cosine
    index: IndexConfig = Field(default_factory=HnswIndexConfig)
    encoder: EncoderSpec | None = None
    multivector: MultiVectorConfig | None = None
    reduce: ReduceConfig | None = None
    quantize: QuantizeConfig | None = None
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    on_disk: bool = False  # full-precision vectors memory-mapped from disk instead of copied into RAM
    quality: QualityConfig | None = None  # a recall target instead of hand-set ef / nprobe / oversampling

    @property
    def compressed(self) -> bool:
        """True when the ANN index is built on transformed vectors that need training."""
        return self.reduce is not None or self.quantize is not None


class VectorConfig(_VectorSettings):
    """One named vector of a point: its dimension, metric, index and compression.

    `multivector` makes it a set of token vectors per point (MUVERA candidates, MaxSim ranking);
    `encoder` lets points and searches carry text that fills this vector."""

    dim: int = Field(ge=1, le=65536)

    @model_validator(mode="after")
    def _check(self) -> VectorConfig:
        _check_vector(self, self.dim)
        return self


class OptimizerConfig(_Model):
    """When the background optimizer compacts this collection (unset: the server's defaults,
    `NESTOR_VACUUM_THRESHOLD` and `NESTOR_VACUUM_MIN_POINTS`). Like Qdrant's vacuum optimizer: once
    dead labels (overwritten or deleted points) exceed `deleted_threshold` of all labels and there are at
    least `vacuum_min_points` labels, the collection is rewritten with its live points only."""

    deleted_threshold: float | None = Field(None, gt=0, le=1)
    vacuum_min_points: int | None = Field(None, ge=0)
    enabled: bool = True  # false: compact only on POST /collections/{name}/optimize


class CollectionConfig(_VectorSettings):
    """What `PUT /collections/{name}` takes.

    Either one unnamed vector per point, configured at the top level (`dim` is then required), or
    named vectors: `vectors: {name: VectorConfig}`, each with its own dimension, metric and index.
    The top-level form is the vector named "" (the default). With an `encoder`, points and searches
    may carry `text` instead of a vector."""

    dim: int | None = Field(None, ge=1, le=65536)
    # `{}` (or leaving out both `dim` and `vectors`) with `sparse_vectors`: a sparse-only collection
    vectors: dict[Annotated[str, Field(pattern=VECTOR_NAME)], VectorConfig] | None = Field(None, max_length=16)
    # Scale-out (a server started with a Ray address): points hashed by id over `shards` shards,
    # each held by `replicas` Ray actors. 1 and 1 is the ordinary single-node collection.
    shards: int = Field(1, ge=1, le=1024)
    replicas: int = Field(1, ge=1, le=16)
    # Payload indexes by payload key (`a.b` for nested keys): `PUT /collections/{name}/index` adds one.
    # A schema is a type name or `{"type": "keyword", "is_tenant": true}`.
    payload_schema: dict[Annotated[str, Field(min_length=1, max_length=256)], PayloadSchema] = Field(
        default_factory=dict
    )
    optimizer: OptimizerConfig | None = None  # compaction thresholds (docs/compaction.md)
    # Sparse vectors by name, beside the dense ones (Qdrant's `sparse_vectors`); names differ from theirs.
    sparse_vectors: dict[Annotated[str, Field(pattern=SPARSE_NAME)], SparseVectorConfig] | None = Field(
        None, max_length=16
    )

    @field_validator("payload_schema", mode="after")
    @classmethod
    def _plain_schemas(cls, v: dict[str, PayloadSchema]) -> dict[str, PayloadSchema]:
        return {k: plain_schema(s) for k, s in v.items()}

    @model_validator(mode="after")
    def _check_form(self) -> CollectionConfig:
        both = set(self.sparse_vectors or {}) & set(self.vectors or {})
        if both:
            raise ValueError(f"{', '.join(sorted(both))}: a name is either a dense or a sparse vector, not both")
        if self.vectors is None and self.dim is None and self.sparse_vectors:
            self.vectors = {}  # sparse only: the named form, with no dense vector
        if self.vectors == {} and not self.sparse_vectors:
            raise ValueError("vectors is empty: give at least one vector (dense, or in sparse_vectors)")
        if self.vectors is not None:
            fields = type(self).model_fields
            mixed = [  # a full dump of a named config repeats the top-level defaults: those are fine
                k for k in _PER_VECTOR if getattr(self, k) != fields[k].get_default(call_default_factory=True)
            ]
            if mixed:
                raise ValueError(
                    f"with named vectors, set {', '.join(mixed)} inside each entry of vectors, not at the top level"
                )
            return self
        if self.dim is None:
            raise ValueError('dim is required (or give named vectors: {"vectors": {name: {"dim": ...}}})')
        _check_vector(self, self.dim)
        return self

    @property
    def named(self) -> bool:
        """True for the `vectors: {...}` form; False for one unnamed vector configured at the top level."""
        return self.vectors is not None

    def vector_fields(self) -> dict[str, VectorConfig]:
        """Every vector of a point by name; the top-level form is the one vector named ""."""
        if self.vectors is not None:
            return dict(self.vectors)
        assert self.dim is not None
        return {"": VectorConfig.model_validate({k: getattr(self, k) for k in _PER_VECTOR})}

    def sparse_fields(self) -> dict[str, SparseVectorConfig]:
        """Every sparse vector of a point by name."""
        return dict(self.sparse_vectors or {})
