"""The job runner: accepts ingest jobs, runs them on worker threads, and resumes them after a restart.

Started and stopped by the app's lifespan. `stop()` lets each running job finish its current commit and
leaves it `running` on disk, so the next start re-queues it and it resumes from its last checkpoint.
A job that dies with the process (kill -9) is picked up the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from encoders import EncoderError
from index.catalog import Catalog
from index.contract import AnyCollection
from index.errors import CollectionNotFound, DimensionMismatch, NestorError
from nestor_client.models import (
    IngestFormat,
    IngestJobRequest,
    JobError,
    JobInfo,
    JobState,
    Metric,
)
from server.embedding import collection_encoder, sparse_encoder
from server.ingest.batch import Prepared, Target, prepare
from server.ingest.errors import InvalidSource, JobConflict, JobNotFound
from server.ingest.jobs import ACTIVE, JobRecord, JobStore
from server.ingest.pipeline import run_ordered
from server.ingest.roots import IngestRoots
from server.ingest.sources import Cursor, NpySource, Source, open_source
from server.ingest.spec import default_target, resolve_source, source_fields

__all__ = ["JobRunner"]

log = logging.getLogger("nestor.jobs")

MAX_REPORTED_ERRORS = 1000  # `failed` still counts them all
_CHECKPOINT_SECONDS = 0.25  # persist progress at most this often (a replay after a crash is idempotent)


class _RowError(Exception):
    """A bad row in strict mode: the job stops there."""


@dataclass(eq=False)
class _Job:
    record: JobRecord
    lock: threading.Lock = field(default_factory=threading.Lock)  # the record's fields; held only briefly
    save_lock: threading.Lock = field(default_factory=threading.Lock)  # one file write at a time, in order
    cancel: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    run_started: float | None = None  # monotonic time this process started running it
    run_rows: int = 0  # rows done when it did
    saved_at: float = 0.0


class JobRunner:
    def __init__(
        self,
        catalog: Catalog,
        data_dir: Path,
        *,
        workers: int = 1,
        ingest_workers: int = 2,
        queue_batches: int = 4,
        ingest_roots: Sequence[Path] = (),
    ) -> None:
        self.catalog = catalog
        self.store = JobStore(data_dir / "jobs")
        self.uploads = data_dir / "uploads"
        self.roots = IngestRoots([self.uploads, *ingest_roots])  # the upload directory is always one
        self.ingest_workers = ingest_workers
        self.queue_batches = queue_batches
        self._n_workers = workers
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.uploads.mkdir(parents=True, exist_ok=True)
        for rec in sorted(self.store.load(), key=lambda r: r.created_at):
            job = _Job(rec)
            self._jobs[rec.id] = job
            if rec.state in ACTIVE:
                rec.state = JobState.queued
                self._queue.put(rec.id)
            else:
                job.ended.set()
        owned = {Path(j.record.source.path).name for j in self._jobs.values() if j.record.upload}
        for f in self.uploads.iterdir():  # interrupted uploads, and sources of jobs that are gone
            if f.name not in owned:
                f.unlink(missing_ok=True)
        for i in range(self._n_workers):
            t = threading.Thread(target=self._work, name=f"jobs-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=120)

    # -- the API's side --------------------------------------------------------------------

    def submit(self, request: IngestJobRequest, *, upload: bool = False) -> JobInfo:
        """Check the request against its collection and source, persist it as queued, and queue it."""
        coll = default_target(self.catalog.get(request.collection))
        spec = resolve_source(request.source, coll, self.roots)
        source = open_source(spec, source_fields(spec), self.roots)
        source.check()
        if isinstance(source, NpySource):  # resolve_source refused it for a sparse-only collection
            dim = coll.vector_config(None)[1].dim
            if source.dim != dim:
                raise DimensionMismatch(f"the source's vectors have dimension {source.dim}; the collection's is {dim}")
        if spec.text_field is not None and coll.config.vector_fields():
            collection_encoder(coll)  # fail now, not in the job, if the encoder cannot be built
        rec = JobRecord(
            id=uuid.uuid4().hex,
            state=JobState.queued,
            collection=request.collection,
            source=spec,
            batch_size=request.batch_size,
            strict=request.strict,
            defer_indexing=request.defer_indexing,
            created_at=time.time(),
            upload=upload,
        )
        self.store.save(rec)
        with self._lock:
            self._jobs[rec.id] = _Job(rec)
        self._queue.put(rec.id)
        return rec.info()

    def new_upload(self, fmt: IngestFormat) -> Path:
        """A fresh path under the uploads directory for an upload's bytes."""
        return self.uploads / f"{uuid.uuid4().hex}.{fmt.value}"

    def get(self, job_id: str) -> JobInfo:
        return self._info(self._job(job_id))

    def list(self) -> list[JobInfo]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [self._info(j) for j in sorted(jobs, key=lambda j: j.record.created_at, reverse=True)]

    def cancel(self, job_id: str, wait: float = 10.0) -> JobInfo:
        """Cancel a queued job at once, or a running one at its next batch (waiting up to `wait` s)."""
        job = self._job(job_id)
        with job.lock:
            rec = job.record
            if rec.state not in ACTIVE:
                raise JobConflict(f"job {job_id!r} has already {rec.state.value}")
            queued = rec.state is JobState.queued
            if queued:  # the worker checks the state under the same lock, so it will skip this job
                rec.state = JobState.cancelled
            else:
                job.cancel.set()
        if queued:
            self._finish(job, JobState.cancelled)
        job.ended.wait(wait)
        return self._info(job)

    def _job(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _info(self, job: _Job) -> JobInfo:
        with job.lock:
            info = job.record.info()
            started = job.run_started
            run_rows = job.run_rows
        if info.state is JobState.running and started is not None:
            elapsed = time.monotonic() - started
            rows = info.done - run_rows
            if elapsed > 0 and rows > 0:
                info.rate = rows / elapsed
                if info.total is not None:
                    info.eta = max(info.total - info.done, 0) / info.rate
        return info

    # -- the worker's side -----------------------------------------------------------------

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            job = self._jobs[job_id]
            with job.lock:
                if job.record.state is not JobState.queued or self._stopping.is_set():
                    continue
                rec = job.record
                rec.state = JobState.running
                rec.started_at = rec.started_at or time.time()
                job.run_started, job.run_rows = time.monotonic(), rec.done
            self._save(job)
            self._run(job)

    def _run(self, job: _Job) -> None:
        rec = job.record
        outcome, error = JobState.failed, None
        try:
            done = self._ingest(job)
            if done:
                outcome = JobState.succeeded
            elif job.cancel.is_set():
                outcome = JobState.cancelled
            else:  # the server is stopping: stay `running` on disk, to resume at the next start
                self._save(job)
                job.ended.set()
                return
        except _RowError as exc:
            error = str(exc)
        except (NestorError, EncoderError) as exc:
            error = exc.message
        except Exception as exc:
            log.exception("job %s failed", rec.id)
            error = f"internal error: {exc!r}"
        with job.lock:
            rec.error = error
            if job.run_started is not None:
                elapsed = time.monotonic() - job.run_started
                rec.rate = (rec.done - job.run_rows) / elapsed if elapsed > 0 else None
        self._finish(job, outcome)

    def _finish(self, job: _Job, state: JobState) -> None:
        """Move to a final state, persist it, and drop an uploaded source."""
        rec = job.record
        with job.lock:
            rec.state, rec.finished_at, rec.eta = state, time.time(), None
        self._save(job)
        job.ended.set()
        if rec.upload:
            Path(rec.source.path).unlink(missing_ok=True)

    def _save(self, job: _Job) -> None:
        # The fsyncs happen outside `job.lock`, so a GET of the job never waits on the disk.
        with job.save_lock:
            with job.lock:
                data = job.record.model_dump_json().encode()
            self.store.write(job.record.id, data)

    def _ingest(self, job: _Job) -> bool:
        rec = job.record
        try:
            coll = default_target(self.catalog.get(rec.collection))
        except CollectionNotFound:
            raise InvalidSource(f"collection {rec.collection!r} no longer exists") from None
        if coll.distributed:  # a sharded collection: a Ray Data pipeline (cluster/ingest.py)
            return self._ingest_ray(job, coll)
        fields = source_fields(rec.source)
        source: Source = open_source(rec.source, fields, self.roots)
        if rec.total is None:
            source.check()
            total = source.count()
            with job.lock:
                rec.total = total
            self._save(job)
        sparse = {n: sparse_encoder(coll, n) for n, s in coll.config.sparse_fields().items() if s.encoder is not None}
        if coll.config.vector_fields():
            encoder = collection_encoder(coll) if fields.text is not None else None
            name, vcfg = coll.vector_config(None)
            texts = sparse if encoder is not None else {}
            target = Target(vcfg.dim, vcfg.metric is Metric.cosine, encoder, name, texts)
        else:  # sparse only: a text fills the sparse vectors with an encoder, no dense one
            target = Target(0, False, None, None, sparse if fields.text is not None else {})
        cursor = Cursor(**rec.cursor)
        if rec.defer_indexing:
            coll.pause_indexing()
        try:
            return run_ordered(
                source.chunks(cursor, rec.batch_size),
                partial(prepare, target=target),
                partial(self._commit, job, coll),
                workers=self.ingest_workers,
                depth=self.queue_batches,
                stopped=lambda: job.cancel.is_set() or self._stopping.is_set(),
            )
        finally:
            if rec.defer_indexing:
                coll.resume_indexing()

    def _ingest_ray(self, job: _Job, coll: Any) -> bool:
        """Read, encode and route with Ray Data; progress lands in the same record as the in-process path."""
        from cluster.ingest import IngestReport, ingest_jsonl

        rec = job.record
        if rec.source.format is not IngestFormat.jsonl:
            raise InvalidSource("a sharded collection ingests JSON Lines sources (through Ray Data)")
        path = self.roots.confine(rec.source.path)  # again at each start: the roots may have changed
        if rec.total is None:
            source = open_source(rec.source, source_fields(rec.source), self.roots)
            source.check()
            with job.lock:
                rec.total = source.count()
            self._save(job)
        upserted, failed, errors = rec.upserted, rec.failed, list(rec.errors)

        def on_batch(report: IngestReport) -> None:
            if rec.strict and report.errors:  # the batches before this one stay, as in the in-process path
                line, reason = report.errors[0]
                with job.lock:
                    rec.failed, rec.errors = failed + 1, (errors + [_error(line, reason)])[:MAX_REPORTED_ERRORS]
                raise _RowError(f"line {line}: {reason} (strict mode stops at the first bad row)")
            with job.lock:
                rec.done, rec.cursor = report.rows, {"row": report.rows}
                rec.upserted, rec.failed = upserted + report.upserted, failed + report.failed
                new = [_error(line, why) for line, why in report.errors]
                rec.errors = (errors + new)[:MAX_REPORTED_ERRORS]
                now = time.monotonic()
                checkpoint = now - job.saved_at >= _CHECKPOINT_SECONDS
                if checkpoint:
                    job.saved_at = now
            if checkpoint:
                self._save(job)

        spec = rec.source
        if rec.defer_indexing:
            coll.pause_indexing()
        try:
            done, _ = ingest_jsonl(
                coll,
                str(path),
                id_field=spec.id_field,
                text_field=spec.text_field,
                vector_field=spec.vector_field,
                payload_fields=list(spec.payload_fields) if spec.payload_fields is not None else None,
                batch_size=rec.batch_size,
                start_row=rec.done,
                on_batch=on_batch,
                stopped=lambda: job.cancel.is_set() or self._stopping.is_set(),
            )
        finally:
            if rec.defer_indexing:
                coll.resume_indexing()
        return bool(done)

    def _commit(self, job: _Job, coll: AnyCollection, batch: Prepared) -> None:
        rec = job.record
        if rec.strict and batch.errors:
            line, reason = batch.errors[0]
            with job.lock:
                rec.failed += 1
                rec.errors.append(_error(line, reason))
            raise _RowError(f"line {line}: {reason} (strict mode stops at the first bad row)")
        if batch.ids:
            coll.upsert(batch.ids, batch.vectors, batch.payloads)
        # Only now, with the batch acknowledged, may the cursor move past it.
        with job.lock:
            rec.cursor = dataclasses.asdict(batch.end)
            rec.done = batch.end.row
            rec.upserted += len(batch.ids)
            rec.failed += len(batch.errors)
            room = MAX_REPORTED_ERRORS - len(rec.errors)
            rec.errors.extend(_error(line, why) for line, why in batch.errors[: max(room, 0)])
            now = time.monotonic()
            checkpoint = now - job.saved_at >= _CHECKPOINT_SECONDS
            if checkpoint:
                job.saved_at = now
        if checkpoint:
            self._save(job)


def _error(line: int, reason: str) -> JobError:
    return JobError(line=line, reason=reason)
