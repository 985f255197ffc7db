"""Ingest jobs: what `POST /jobs/ingest` takes and what the jobs endpoints return."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from nestor_client._common import InputModel

# ---------------------------------------------------------------------------------------------
# Ingest jobs


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class IngestFormat(StrEnum):
    jsonl = "jsonl"
    parquet = "parquet"
    npy = "npy"


class IngestSource(InputModel):
    """A file on the server. `format` defaults from the extension (.jsonl/.ndjson, .parquet, .npy).

    JSON Lines and Parquet rows carry an id (`id_field`, default "id"; null numbers the rows from 0),
    and either a text (`text_field`) or a vector (`vector_field`): the default is "text" when the
    collection has an encoder and "vector" otherwise. The payload is `payload_fields`, or every other
    field (the text is kept). `sparse_fields` maps sparse vectors to the fields that hold them; a text
    also fills every sparse vector with an encoder (bm25), and in a sparse-only collection a row may
    carry only sparse fields. A `.npy` matrix gets its ids from `ids_path` (a .npy of ints, or a
    text file of one id per line) or the row numbers, and payloads from `payload_path` (JSON Lines).
    """

    path: str = Field(min_length=1)
    format: IngestFormat | None = None
    ids_path: str | None = None
    payload_path: str | None = None
    id_field: str | None = "id"
    text_field: str | None = None
    vector_field: str | None = None
    payload_fields: list[str] | None = None
    # sparse vector name -> the field holding it as {"indices": [...], "values": [...]} (null: none)
    sparse_fields: dict[str, str] | None = None


class IngestJobRequest(InputModel):
    """What `POST /jobs/ingest` takes.

    `strict` stops the job at the first bad row (batches before it stay committed); otherwise bad
    rows are reported and skipped. `defer_indexing` pauses the collection's background indexer
    until the job ends, then indexes everything at once (the bulk-load mode)."""

    collection: str = Field(min_length=1)
    source: IngestSource
    batch_size: int = Field(1000, ge=1, le=100_000)
    strict: bool = False
    defer_indexing: bool = False


class JobError(BaseModel):
    """A bad row: its 1-based line (JSON Lines) or row (Parquet, .npy) number, and why."""

    line: int
    reason: str


class JobInfo(BaseModel):
    """What `GET /jobs/{id}` returns. `done` and `total` count source rows; `done` only moves once a
    batch is durably committed. `rate` is rows per second, `eta` seconds. `errors` lists the first
    bad rows (`failed` counts them all); `error` says why a failed job stopped."""

    id: str
    kind: str = "ingest"
    state: JobState
    collection: str
    source: IngestSource
    batch_size: int
    strict: bool = False
    defer_indexing: bool = False
    done: int = 0
    total: int | None = None
    upserted: int = 0
    failed: int = 0
    rate: float | None = None
    eta: float | None = None
    errors: list[JobError] = Field(default_factory=list)
    error: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
