"""What the server reports about a collection: `CollectionInfo` and its blocks (`GET /collections/{name}`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nestor_client.config import CollectionConfig, PayloadSchemaType


class CollectionSummary(BaseModel):
    name: str
    count: int


class _Readable(BaseModel):
    """Info blocks were plain dicts before they were typed: `block["key"]` and `block.get("key")` still work."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __contains__(self, key: str) -> bool:
        return hasattr(self, key)


class PayloadIndexInfo(_Readable):
    """One payload index in the collection info: its type, state, the live points that have a value, its RAM."""

    data_type: PayloadSchemaType
    is_tenant: bool = False
    value_graphs: bool = False  # its values get graphs of their own (index/tenants.py)
    state: str  # ready | indexing
    points: int = 0
    ram: int = 0


class RecallEstimate(_Readable):
    """A measured recall@k: hits over `total` exact neighbours of `queries` queries, with the 95 % Wilson
    score interval on those per-neighbour hits (`low`, `high`)."""

    recall: float
    low: float
    high: float
    hits: int
    total: int
    queries: int
    source: str  # calibration: "query sample" or "perturbed rows"; live: "recall probe"
    at: float  # unix time


class QualityInfo(_Readable):
    """A vector's recall target and how it is met (`quality` in the config): the search parameters in force,
    those calibration found necessary, and the recall measured at calibration and by the live probe."""

    recall_target: float
    k: int
    state: str  # waiting | calibrating | met | below_target | unmet | exact
    params: dict[str, float] = Field(default_factory=dict)  # in force for searches without their own
    calibrated: dict[str, float] = Field(default_factory=dict)  # what calibration chose
    calibration: RecallEstimate | None = None
    live: RecallEstimate | None = None  # the probe's measure since the parameters last changed
    adjustments: int = 0  # live raises and lowerings since calibration
    points: int = 0  # live points when calibration ran (it runs again once they double or halve)
    interval: str = "95% Wilson score interval on per-neighbour hits"
    message: str | None = None  # why the target is not met, and what to change


class IndexInfo(_Readable):
    """One vector's index: its type and state, points indexed and pending, and (when the background
    indexer keeps failing) the error. Index-specific details (spec, training, multivector) ride along."""

    model_config = ConfigDict(extra="allow")

    type: str
    state: str  # ready | indexing | training | untrained | paused | failing
    indexed: int = 0
    pending: int = 0
    error: str | None = None  # the last indexer failure, while it keeps failing
    backend: str | None = None  # which implementation serves it (e.g. "nestor-graph", "hnswlib")
    quality: QualityInfo | None = None  # the recall target, when the vector has one


class SegmentInfo(_Readable):
    model_config = ConfigDict(extra="allow")

    type: str
    points: int


class MemoryUse(_Readable):
    ram: int = 0
    disk: int = 0


class VectorInfo(_Readable):
    """One named vector of a collection: its index and the memory it takes."""

    index: IndexInfo
    segments: list[SegmentInfo] = Field(default_factory=list)
    memory: dict[str, MemoryUse] = Field(default_factory=dict)
    placement: dict[str, str] = Field(default_factory=dict)


class ByteUsage(_Readable):
    """Bytes that live points use, and bytes that dead ones (overwritten or deleted) still hold until a
    compaction: on disk, and in RAM where the part is held there."""

    disk_live: int = 0
    disk_dead: int = 0
    ram_live: int = 0
    ram_dead: int = 0


class StorageUsage(_Readable):
    """Live and dead bytes of a collection: in total, per vector and part (`rows`: vectors.f32, `index`:
    the graph or codes, `tokens`: a multivector's token files), and the SQLite store."""

    live: int = 0  # disk and RAM bytes of live points
    dead: int = 0
    dead_fraction: float = 0.0  # dead / (live + dead)
    labels: int = 0  # rows each vector store holds (live and dead)
    dead_labels: int = 0  # rows of overwritten or deleted points
    vectors: dict[str, dict[str, ByteUsage]] = Field(default_factory=dict)
    store: ByteUsage = Field(default_factory=ByteUsage)


class OptimizerStatus(_Readable):
    """The compaction now running, if any (`phase`: copying, indexing, catching up, swapping; `progress`
    0..1 within it), and the last one that finished or failed."""

    state: str = "idle"  # idle | running
    phase: str | None = None
    progress: float | None = None
    reason: str | None = None  # what started it: "requested", or the dead fraction that passed the threshold
    started_at: float | None = None
    threshold: float = 0.2  # the dead-label share that triggers one
    min_points: int = 1000
    enabled: bool = True
    last: dict[str, Any] | None = None  # points, disk before and after, seconds, the swap's pause
    last_error: str | None = None


class CollectionInfo(_Readable):
    """What `GET /collections/{name}` returns. `index`, `segments` and `memory` describe the default
    vector (the first named one when there is no default); `vectors` describes each by name."""

    name: str
    config: CollectionConfig
    count: int
    status: str  # green | yellow (indexing) | red (an indexer keeps failing, or a shard is down)
    seq: int
    index: IndexInfo
    segments: list[SegmentInfo]
    memory: dict[str, MemoryUse]
    vectors: dict[str, VectorInfo] = Field(default_factory=dict)
    placement: dict[str, str] = Field(default_factory=dict)  # where each part lives (RAM, disk, mmap)
    stats: dict[str, Any] | None = None  # rates, latency percentiles and live recall (the dashboard's source)
    last_write: float | None = None
    last_optimized: float | None = None
    cluster: dict[str, Any] | None = None  # sharded collections: shards, replicas, their nodes and health
    payload_schema: dict[str, PayloadIndexInfo] = Field(default_factory=dict)
    usage: StorageUsage | None = None  # live and dead bytes (local collections)
    optimizer: OptimizerStatus | None = None  # compaction progress (local collections)
