"""Every server setting, read from `NESTOR_*` environment variables (or a `.env` file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NESTOR_", env_file=".env", extra="ignore")

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(6333, ge=1, le=65535, description="TCP port")
    data_dir: Path = Field(Path("./data"), description="embedded store: one folder per collection")
    log_level: str = Field("info", description="uvicorn/python log level")
    processes: int = Field(
        1,
        ge=1,
        description="server processes on the one port and data directory: the first does every write, the "
        "others serve searches read-only and forward the rest to it (docs/processes.md)",
    )
    follower_vectors: Literal["ram", "mapped"] = Field(
        "ram",
        description="where a follower keeps a collection's float32 vectors: its own RAM copy (searches as fast as "
        "the primary's) or a shared read-only map of the primary's file (no second copy in RAM; searches walk 4 KB "
        "pages, measured 12-20 % more CPU a search at 100k: docs/processes.md)",
    )
    follower_catch_up: bool = Field(
        True,
        description="followers apply the primary's writes incrementally; false: they load a changed collection "
        "whole, as before (docs/processes.md)",
    )
    malloc_arenas: int | None = Field(
        2,
        ge=1,
        description="cap on glibc malloc arenas for `nestor serve`, so RSS tracks the data (unset: glibc's default)",
    )

    max_body_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="largest request body accepted (413)")
    max_pending_writes: int = Field(
        64, ge=1, description="upserts and deletes in progress at once; more get 503 with Retry-After"
    )
    max_rss_mb: int | None = Field(
        None,
        ge=1,
        description="resident memory (MiB) past which writes that add data get 503 with Retry-After (unset: no limit)",
    )
    max_batch_points: int = Field(10_000, ge=1, description="points per upsert/delete/get request (413)")
    max_search_limit: int = Field(10_000, ge=1, description="largest limit+offset of a search (422)")
    max_search_batch: int = Field(1_024, ge=1, description="searches per batch search request (413)")
    max_query_depth: int = Field(4, ge=0, le=32, description="prefetch levels under a query's root (422)")
    max_query_candidates: int = Field(
        100_000, ge=1, description="sum of the limits of every stage of one query pipeline (422)"
    )
    max_filter_depth: int = Field(8, ge=1, description="nesting depth of a filter (422)")
    max_filter_conditions: int = Field(256, ge=1, description="conditions in a filter (422)")
    max_dim: int = Field(65_536, ge=1, le=65_536, description="largest vector dimension of a new collection (422)")
    max_payload_bytes: int = Field(1024 * 1024, ge=2, description="largest payload of one point, as JSON (413)")

    auth: Literal["auto", "on", "off"] = Field(
        "auto", description="API key auth: auto (on when keys are configured), on, or off (everyone is admin)"
    )
    api_keys: str = Field(
        "",
        description="API keys as comma-separated role:sha256 entries (role read, write or admin), or a JSON array "
        "of key entries (scoped keys, docs/security.md)",
    )
    api_keys_file: Path | None = Field(
        None, description="a file of role:sha256 entries or JSON scoped-key entries, one a line (# comments)"
    )
    max_snapshot_upload_bytes: int = Field(
        64 * 1024**3, ge=1024, description="largest snapshot accepted by POST .../snapshots/upload (413)"
    )

    exact_filter_threshold: int = Field(
        5_000, ge=0, description="a filter matching at most this many points is searched exactly"
    )
    filter_walk_fraction: float = Field(
        0.3, ge=0, le=1, description="a graph search under a filter matching less than this share walks ACORN's way"
    )
    index_save_idle_seconds: float = Field(2.0, gt=0, description="persist an index this long after it settles")
    index_save_max_seconds: float = Field(60.0, gt=0, description="and at least this often while indexing")
    search_threads: int | None = Field(
        None,
        ge=0,
        description="threads that run cheap searches while other requests are in progress, and that one batch of "
        "searches runs on natively (default: the cores the server may use, shared out among --processes; 0, the "
        "default when that share is one core: every cheap search runs on the event loop, and a batch on one thread)",
    )
    index_threads: int | None = Field(None, ge=1, description="threads for index building (default: all cores)")
    ram_cap_bytes: int = Field(
        0, ge=0, description="RAM a collection's in-RAM vector copies may take; past it they are memory-mapped"
    )
    disk_min_free_bytes: int = Field(
        0, ge=0, description="free bytes a write must leave on the data disk, else 507 before anything is written"
    )
    vacuum_threshold: float = Field(
        0.2, gt=0, le=1, description="compact a collection once dead labels exceed this share of all its labels"
    )
    vacuum_min_points: int = Field(1000, ge=0, description="and it has at least this many labels (live and dead)")
    optimizer_interval: float = Field(
        5.0, ge=0, description="seconds between the optimizer's checks; 0: compact only on POST .../optimize"
    )

    job_workers: int = Field(1, ge=1, description="ingest jobs that run at once; the others wait in the queue")
    ingest_workers: int = Field(2, ge=1, description="threads per job that validate and encode batches")
    ingest_queue_batches: int = Field(
        4, ge=1, description="batches a job holds in flight: bounds its memory and pushes back on reading"
    )
    ingest_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="directories a server-side ingest source may lie under, comma-separated or a JSON list "
        "(symlinks and .. resolved first; the upload directory is always allowed; anything else is 403)",
    )
    max_upload_bytes: int = Field(
        64 * 1024**3, ge=1024, description="largest file accepted by POST /jobs/ingest/upload (413)"
    )

    stats_window_seconds: float = Field(
        600.0, gt=0, description="how far back the per-collection rates and latency percentiles look"
    )
    stats_bucket_seconds: float = Field(10.0, gt=0, description="time resolution of those rates and percentiles")
    probe_interval_seconds: float = Field(30.0, gt=0, description="seconds between rounds of the live recall probe")
    probe_sample_size: int = Field(
        16, ge=0, description="recent queries per collection the recall probe reruns exactly each round (0: off)"
    )
    probe_cpu_budget: float = Field(
        0.02, gt=0, le=1, description="share of one core the recall probe may use; it slows down to stay under it"
    )
    recall_warn_threshold: float = Field(0.9, ge=0, le=1, description="live recall@10 below this is flagged")

    ray_address: str | None = Field(
        None,
        description="a Ray cluster to hold collections with shards or replicas: auto, HOST:PORT, or local "
        "(start Ray inside the server); unset: single node, and ray is never imported",
    )

    @field_validator("ingest_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        """`NESTOR_INGEST_ROOTS=/srv/a,/srv/b`, or a JSON list for paths with commas."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
        return value
