"""Distributed bulk ingest: a JSON Lines file through a Ray Data pipeline into a sharded collection.

    read_text (blocks, in parallel)  ->  map_batches(_Embed): parse, validate, encode   ->  driver: upsert
                                          (an actor pool across the cluster; one GPU       (routed by id to the
                                           per worker when the cluster has GPUs)            shards, in batches)

The parse and the encoder run where Ray puts them; the driver (the server) only routes the prepared
batches to the shards, through the same acknowledged write as the API, in source order (Ray Data's
`preserve_order`), so a job's progress is one row number and a resumed job skips the rows before it.
A bad row (invalid JSON, a missing field, a bad id, a wrong dimension, NaN, an empty text) becomes a
`(line, reason)` error and is skipped, as in the in-process pipeline (`server/ingest/`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from index.backends.base import F32
from index.collection import default_vector
from nestor_client.models import CollectionConfig

__all__ = ["IngestReport", "ingest_jsonl"]

_MAX_ID = 2**63 - 1


@dataclass
class IngestReport:
    rows: int = 0  # source lines consumed (blank ones included)
    upserted: int = 0
    failed: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (1-based line, reason)


class _Embed:
    """The map_batches worker: JSON lines in, (id, vector, payload, error) columns out."""

    def __init__(self, config_json: str, fields: dict[str, Any]) -> None:
        config = CollectionConfig.model_validate_json(config_json)
        default = default_vector(config)
        if default is None:
            raise ValueError("the collection has several named vectors: ingest fills a default one")
        self.config = config.vector_fields()[default]  # ingest fills the default vector
        self.fields = fields
        self.encoder: Any = None
        if fields["text"] is not None:
            import encoders

            spec = self.config.encoder
            if spec is None:
                raise ValueError("the collection has no encoder, so rows need a vector field")
            self.encoder = encoders.get_encoder(spec.name, spec.config)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        lines = list(batch["text"])
        n, dim = len(lines), self.config.dim
        ids: list[str] = [""] * n
        payloads: list[str] = [""] * n
        errors: list[str] = [""] * n
        vectors = np.zeros((n, dim), np.float32)
        texts: list[tuple[int, str]] = []
        f = self.fields
        for i, line in enumerate(lines):
            if not line.strip():
                errors[i] = "-"  # a blank line: counted, not an error
                continue
            try:
                row = orjson.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("a line must be a JSON object")
                pid = row.get(f["id"]) if f["id"] is not None else None
                if f["id"] is not None:
                    if f["id"] not in row:
                        raise ValueError(f"missing field {f['id']!r}")
                    _check_id(pid)
                if f["text"] is not None:
                    text = row.get(f["text"])
                    if not isinstance(text, str) or not text.strip():
                        raise ValueError(f"field {f['text']!r} must be a non-empty string")
                    texts.append((i, text))
                else:
                    vec = np.asarray(row.get(f["vector"]), dtype=np.float32)
                    if vec.shape != (dim,):
                        raise ValueError(f"expected a vector of dimension {dim} in field {f['vector']!r}")
                    vectors[i] = vec
                keep = f["payload"]
                skip = {f["id"], f["vector"]}
                payload = {k: v for k, v in row.items() if (k in keep if keep is not None else k not in skip)}
                ids[i] = orjson.dumps(pid).decode()
                payloads[i] = orjson.dumps(payload).decode()
            except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                errors[i] = str(exc) or type(exc).__name__
        if texts:
            emb = self.encoder.embed_documents([t for _, t in texts])
            dense = emb.dense()
            for j, (i, _) in enumerate(texts):
                if j in emb.errors:
                    errors[i] = f"cannot embed the text: {emb.errors[j]}"
                else:
                    vectors[i] = dense[j]
        for i in range(n):
            if errors[i]:
                continue
            v = vectors[i]
            if not np.isfinite(v).all():
                errors[i] = "the vector contains NaN or Inf"
            elif self.config.metric.value == "cosine" and not v.any():
                errors[i] = "the vector is all zeros, which has no cosine direction"
        return {"id": np.array(ids, dtype=object), "vector": vectors, "payload": np.array(payloads, dtype=object),
                "error": np.array(errors, dtype=object)}  # fmt: skip


def _check_id(pid: Any) -> None:
    if isinstance(pid, bool) or not isinstance(pid, int | str):
        raise ValueError("id must be an unsigned integer or a string")
    if isinstance(pid, int) and not 0 <= pid <= _MAX_ID:
        raise ValueError(f"id {pid} is out of range (0 to 2^63-1)")
    if isinstance(pid, str) and not 1 <= len(pid) <= 512:
        raise ValueError("a string id must have 1 to 512 characters")


def ingest_jsonl(
    coll: Any,
    path: str,
    *,
    id_field: str | None = "id",
    text_field: str | None = None,
    vector_field: str | None = None,
    payload_fields: list[str] | None = None,
    batch_size: int = 1000,
    workers: int | None = None,
    start_row: int = 0,
    on_batch: Callable[[IngestReport], None] | None = None,
    stopped: Callable[[], bool] | None = None,
) -> tuple[bool, IngestReport]:
    """Load a JSON Lines file into `coll` (a `ShardedCollection`) with Ray Data.

    `on_batch(report)` runs after each acknowledged batch; `stopped()` cuts the job short (returns
    False). Rows before `start_row` (a resumed job's checkpoint) are read but not written again."""
    import ray
    import ray.data

    if text_field is None and vector_field is None:
        _, vcfg = coll.vector_config(None)
        text_field, vector_field = ("text", None) if vcfg.encoder is not None else (None, "vector")
    fields = {"id": id_field, "text": text_field, "vector": vector_field, "payload": payload_fields}
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # commits in source order: progress is one row number
    ctx.enable_progress_bars = False  # progress goes to the job record, not the server's stderr
    gpus = float(ray.cluster_resources().get("GPU", 0))
    cpus = max(int(ray.cluster_resources().get("CPU", 1)), 1)
    # one CPU is left to the read tasks: a pool that takes every CPU starves them and the job never starts
    pool = workers or (int(gpus) if gpus else max(1, min(cpus - 1, 8)))
    ds = ray.data.read_text(path, drop_empty_lines=False).map_batches(
        _Embed,
        fn_constructor_kwargs={"config_json": coll.config.model_dump_json(), "fields": fields},
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=pool,
        num_gpus=1 if gpus else 0,
        num_cpus=0 if gpus else 1,
    )
    report = IngestReport()
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2):
        if stopped is not None and stopped():
            return False, report
        n = len(batch["id"])
        first = report.rows  # 0-based row of this batch's first line
        report.rows += n
        if report.rows <= start_row:
            continue
        rows = [i for i in range(n) if first + i >= start_row]
        good = [i for i in rows if not batch["error"][i]]
        for i in rows:
            why = batch["error"][i]
            if why and why != "-":
                report.failed += 1
                if len(report.errors) < 1000:
                    report.errors.append((first + i + 1, str(why)))
        if good:
            last = {_pid(batch["id"][i], first + i, id_field): i for i in good}  # a later line overwrites
            good = sorted(last.values())
            ids = [_pid(batch["id"][i], first + i, id_field) for i in good]
            vectors: F32 = np.ascontiguousarray(batch["vector"][good], dtype=np.float32)
            payloads = [orjson.loads(batch["payload"][i]) or None for i in good]
            coll.upsert(ids, vectors, payloads)
            report.upserted += len(good)
        if on_batch is not None:
            on_batch(report)
    return True, report


def _pid(text: str, row: int, id_field: str | None) -> int | str:
    if id_field is None:
        return row
    pid = orjson.loads(text)
    if not isinstance(pid, int | str):
        raise TypeError(f"row {row + 1}: id {pid!r} is not an integer or a string")
    return pid
