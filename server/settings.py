"""Every server setting, read from `NESTOR_*` environment variables (or a `.env` file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NESTOR_", env_file=".env", extra="ignore")

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(6333, ge=1, le=65535, description="TCP port")
    data_dir: Path = Field(Path("./data"), description="embedded store: one folder per collection")
    log_level: str = Field("info", description="uvicorn/python log level")

    max_body_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="largest request body accepted (413)")
    max_batch_points: int = Field(10_000, ge=1, description="points per upsert/delete/get request (413)")
    max_search_limit: int = Field(10_000, ge=1, description="largest limit+offset of a search (422)")
    max_search_batch: int = Field(1_024, ge=1, description="searches per batch search request (413)")
    max_filter_depth: int = Field(8, ge=1, description="nesting depth of a filter (422)")
    max_filter_conditions: int = Field(256, ge=1, description="conditions in a filter (422)")

    exact_filter_threshold: int = Field(
        5_000, ge=0, description="a filter matching at most this many points is searched exactly"
    )
    index_save_idle_seconds: float = Field(2.0, gt=0, description="persist an index this long after it settles")
    index_save_max_seconds: float = Field(60.0, gt=0, description="and at least this often while indexing")
    index_threads: int | None = Field(None, ge=1, description="threads for index building (default: all cores)")

    job_workers: int = Field(1, ge=1, description="ingest jobs that run at once; the others wait in the queue")
    ingest_workers: int = Field(2, ge=1, description="threads per job that validate and encode batches")
    ingest_queue_batches: int = Field(
        4, ge=1, description="batches a job holds in flight: bounds its memory and pushes back on reading"
    )
    max_upload_bytes: int = Field(
        64 * 1024**3, ge=1024, description="largest file accepted by POST /jobs/ingest/upload (413)"
    )
