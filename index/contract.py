"""The collection contract: what the server may call on any collection (local, sharded, or next).

`CollectionReader` is the read side, `CollectionWriter` the write side; `AnyCollection` is both. The
server talks only to this protocol, so a new kind of collection needs no change in `server/`.
The engine's value types (`Query`, `Hit`, `QueryResult`, `WriteResult`) live here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from nestor_client.models import (
    CollectionConfig,
    CollectionInfo,
    Filter,
    PayloadSchema,
    SearchParams,
    VectorConfig,
)

__all__ = [
    "AnyCollection",
    "CollectionOptions",
    "CollectionReader",
    "CollectionWriter",
    "Hit",
    "PointIdT",
    "Query",
    "QueryResult",
    "SparseStats",
    "SparseVec",
    "VectorsIn",
    "WithVector",
    "WriteResult",
]

PointIdT = int | str
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class SparseVec:
    """One sparse vector: `values[i]` at dimension `indices[i]` (uint32 and float32 arrays of equal length)."""

    indices: npt.NDArray[np.uint32]
    values: F32


@dataclass(frozen=True, slots=True)
class SparseStats:
    """The IDF modifier's inputs for one sparse query: the live points with the vector (`n`), and how
    many of them have each of the query's terms (`df`, aligned with its indices sorted ascending)."""

    n: int
    df: npt.NDArray[np.int64]


# An upsert's vectors: a matrix (or a list of token matrices) for the default vector, or by name a
# matrix, or one array (a `SparseVec` for a sparse vector) per point (None where the point omits it).
VectorsIn = F32 | Sequence[F32] | Mapping[str, F32 | Sequence[F32 | SparseVec | None]]
WithVector = bool | Sequence[str]


@dataclass(frozen=True, slots=True)
class CollectionOptions:
    """Engine-wide knobs (from server settings), not part of a collection's config."""

    exact_filter_threshold: int = 5000  # a filter matching at most this many points runs exactly
    # a graph walk under a filter matching less than this share of the points is ACORN's (index/planner.py)
    filter_walk_fraction: float = 0.3
    save_idle_seconds: float = 2.0  # persist the index once idle this long after a change
    save_max_seconds: float = 60.0  # and at least this often while busy
    index_threads: int | None = None
    search_threads: int | None = None  # threads a batch search runs on natively (index/native.py); None: all cores
    # the background optimizer (index/optimizer.py): compact once dead labels exceed this share of all
    # labels and the collection has at least this many; per collection, `config.optimizer` overrides both
    vacuum_threshold: float = 0.2
    vacuum_min_points: int = 1000
    ram_cap: int = 0  # bytes of in-RAM vector copies per collection; past it they are memory-mapped (index/ramcap.py)
    disk_min_free: int = 0  # bytes a write must leave free on the data disk, else 507 (index/disk.py)
    # seconds between the optimizer's checks; 0: compact only when asked (/optimize). The server's
    # NESTOR_OPTIMIZER_INTERVAL (5 s) turns it on; an embedded engine opts in
    optimizer_interval: float = 0.0
    # a per-value graph's vectors (index/tenants.py): "int8", codes of its own (a quarter of its members'
    # vectors, in walk order) rescored from the rows, or "float32", links only over the rows in place. On
    # the 30k points of `zone == far` at 300k (benchmarks/FILTERS.md) int8 walked ef 384 in 0.48 ms of CPU
    # against 2.3 ms: the rows a value's walk reads lie scattered among all of the collection's
    value_graph_codec: Literal["int8", "float32"] = "int8"


@dataclass(slots=True)
class Query:
    vector: F32  # [dim]; for a multivector, the query's token vectors [t, dim]
    limit: int = 10
    offset: int = 0
    filter: Filter | None = None
    params: SearchParams | None = None
    with_payload: bool = True
    with_vector: WithVector = False
    score_threshold: float | None = None
    using: str | None = None  # the named vector to search; None: the default ("", or the only one)
    sparse: SparseVec | None = None  # the query of a sparse `using` (`vector` is then empty)
    # `modifier: idf` statistics of the whole collection for `sparse` (a sharded collection gathers them:
    # cluster/idf.py); None: the searched field's own
    sparse_stats: SparseStats | None = None


@dataclass(slots=True)
class Hit:
    id: PointIdT
    score: float
    payload: dict[str, Any] | None = None
    # asked-for vectors by name: a list of floats, a list of token vectors for a multivector, or a
    # sparse vector's {"indices": [...], "values": [...]}
    vectors: dict[str, Any] | None = None


@dataclass(slots=True)
class QueryResult:
    hits: list[Hit]
    strategy: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    count: int
    seq: int


@runtime_checkable
class CollectionReader(Protocol):
    name: str
    config: CollectionConfig
    distributed: bool  # True when the points live on Ray actors (ingest then runs on Ray Data)

    @property
    def count(self) -> int: ...

    @property
    def seq(self) -> int: ...

    def vector_config(self, using: str | None) -> tuple[str, VectorConfig]:
        """The named vector a request means (None: the default), or InvalidRequest naming the choices."""
        ...

    def count_where(self, flt: Filter | None) -> int: ...

    def get(self, ids: list[PointIdT], *, with_payload: bool = True, with_vector: WithVector = False) -> list[Hit]: ...

    def scroll(
        self,
        flt: Filter | None = None,
        *,
        limit: int = 10,
        offset: PointIdT | None = None,
        with_payload: bool = True,
        with_vector: WithVector = False,
    ) -> tuple[list[Hit], PointIdT | None]:
        """Up to `limit` points matching `flt` in id order (integer ids ascending, then string ids), from
        the id `offset` on (inclusive); and the id the next page starts from, None after the last page."""
        ...

    def is_cheap(self, q: Query) -> bool:
        """True when `q` may run on the event loop (sub-millisecond, no disk)."""
        ...

    def search(self, queries: list[Query], *, partial: bool = False) -> list[QueryResult]:
        """`partial`: a sharded collection with a shard down answers from the others (flagged in the strategy)."""
        ...

    def info(self) -> CollectionInfo: ...


@runtime_checkable
class CollectionWriter(Protocol):
    def upsert(
        self, ids: list[PointIdT], vectors: VectorsIn, payloads: list[dict[str, Any] | None] | None = None
    ) -> WriteResult: ...

    def delete(self, ids: list[PointIdT]) -> WriteResult: ...

    def delete_where(self, flt: Filter) -> WriteResult: ...

    def add_query_sample(self, vectors: F32, *, replace: bool = False, using: str | None = None) -> int: ...

    def create_payload_index(self, key: str, schema: PayloadSchema, *, wait: bool = True) -> bool:
        """Index payload `key` as `schema` (a type, or `{"type": "keyword", "is_tenant": true}`; persisted in
        `payload_schema`); False when it already exists.
        `wait`: return once it is built (else filters on `key` run unindexed until then)."""
        ...

    def delete_payload_index(self, key: str) -> bool:
        """Drop the payload index on `key`; False when there is none."""
        ...

    def pause_indexing(self) -> None: ...

    def resume_indexing(self) -> None: ...

    def backup_store(self, target: Path) -> tuple[int, int]:
        """Copy the store of record to `target`; the committed (label count, seq) it holds."""
        ...

    def snapshot_files(self, labels: int) -> list[tuple[str, Path, int]]:
        """(archive name, path, committed bytes or -1 for all) of every file a snapshot at `labels` needs."""
        ...

    def index_dirs(self) -> list[tuple[str, Path]]:
        """(vector directory relative to the collection's, its saved index directory) for a snapshot."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AnyCollection(CollectionReader, CollectionWriter, Protocol):
    """Every collection kind implements both sides."""
