"""Ingest jobs: start one from a file on the server or from an upload, list, inspect, cancel."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from nestor_client.models import IngestFormat, IngestJobRequest, IngestSource, JobInfo
from server.auth import Role, require
from server.deps import JobsDep
from server.ingest.errors import InvalidSource
from server.ingest.uploads import save_stream
from server.openapi import JobList
from server.wire import NestorRoute, envelope

# Every job route needs write: a job upserts, and its listing shows source paths on the server.
router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=NestorRoute, dependencies=[require(Role.write)])

UPLOAD_PATH = "/jobs/ingest/upload"  # its body limit is max_upload_bytes, not max_body_bytes


@router.post(
    "/ingest",
    status_code=202,
    summary="Start an ingest job from a file on the server (JSON Lines, Parquet or .npy)",
    responses={202: {"model": JobInfo}},
)
async def create_ingest_job(body: IngestJobRequest, request: Request, jobs: JobsDep) -> Response:
    started = time.perf_counter()
    info = await run_in_threadpool(jobs.submit, body)
    return envelope(request, info.model_dump(mode="json"), started, status=202)


@router.post(
    "/ingest/upload",
    status_code=202,
    summary="Start an ingest job from the request body (the raw file), stored under the data directory",
    responses={202: {"model": JobInfo}},
)
async def upload_ingest_job(
    request: Request,
    jobs: JobsDep,
    collection: str = Query(..., min_length=1),
    format: IngestFormat = Query(IngestFormat.jsonl, description="jsonl, parquet or npy (no id or payload files)"),
    id_field: str = Query("id", description="the id field; empty numbers the rows from 0"),
    text_field: str | None = Query(None),
    vector_field: str | None = Query(None),
    payload_fields: str | None = Query(None, description="comma-separated; default: every other field"),
    batch_size: int = Query(1000, ge=1, le=100_000),
    strict: bool = Query(False),
    defer_indexing: bool = Query(False),
) -> Response:
    started = time.perf_counter()
    jobs.catalog.get(collection)  # a 404 before the upload, not after
    path = jobs.new_upload(format)
    try:
        req = IngestJobRequest(
            collection=collection,
            source=IngestSource(
                path=str(path),
                format=format,
                id_field=id_field or None,
                text_field=text_field,
                vector_field=vector_field,
                payload_fields=[f for f in payload_fields.split(",") if f] if payload_fields is not None else None,
            ),
            batch_size=batch_size,
            strict=strict,
            defer_indexing=defer_indexing,
        )
    except ValidationError as exc:
        raise InvalidSource(str(exc)) from None
    try:
        await save_stream(request.stream(), path)
        info = await run_in_threadpool(jobs.submit, req, upload=True)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return envelope(request, info.model_dump(mode="json"), started, status=202)


@router.get("", summary="List jobs, newest first", responses={200: {"model": JobList}})
async def list_jobs(request: Request, jobs: JobsDep) -> Response:
    started = time.perf_counter()
    return envelope(request, {"jobs": [j.model_dump(mode="json") for j in jobs.list()]}, started)


@router.get("/{job_id}", summary="A job's state, progress, rate, ETA and errors", responses={200: {"model": JobInfo}})
async def get_job(job_id: str, request: Request, jobs: JobsDep) -> Response:
    started = time.perf_counter()
    return envelope(request, jobs.get(job_id).model_dump(mode="json"), started)


@router.post("/{job_id}/cancel", summary="Cancel a queued or running job", responses={200: {"model": JobInfo}})
async def cancel_job(job_id: str, request: Request, jobs: JobsDep) -> Response:
    started = time.perf_counter()
    info = await run_in_threadpool(jobs.cancel, job_id)
    return envelope(request, info.model_dump(mode="json"), started)


@router.delete("/{job_id}", summary="Cancel a queued or running job (as POST /jobs/{id}/cancel)")
async def delete_job(job_id: str, request: Request, jobs: JobsDep) -> Response:
    return await cancel_job(job_id, request, jobs)
