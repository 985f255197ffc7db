"""Persisted ingest jobs: one JSON file per job under `<data_dir>/jobs/`, each write atomic.

A record is the job's public `JobInfo` plus its resume point (`cursor`). The cursor only moves after the
batches before it have been upserted and acknowledged, so after a crash a job replays at most the
batches since its last checkpoint; upserts are idempotent by id, so the replay neither duplicates nor
loses a row.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field, ValidationError

from index.fsutil import atomic_write_bytes, makedirs
from nestor_client.models import JobInfo, JobState

__all__ = ["ACTIVE", "JobRecord", "JobStore"]

log = logging.getLogger("nestor.jobs")

ACTIVE = frozenset({JobState.queued, JobState.running})


class JobRecord(JobInfo):
    """A job as stored: its public info, where to resume, and whether it owns its (uploaded) source."""

    cursor: dict[str, int] = Field(default_factory=dict)
    upload: bool = False

    def info(self) -> JobInfo:
        return JobInfo.model_validate(self.model_dump(exclude={"cursor", "upload"}))


class JobStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        makedirs(self.dir)  # durable: a job record is acknowledged once its file and name are

    def load(self) -> list[JobRecord]:
        records = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                records.append(JobRecord.model_validate_json(path.read_bytes()))
            except (OSError, ValidationError):
                log.exception("cannot read job file %s; leaving it out", path)
        for tmp in self.dir.glob(".*.tmp"):  # a write that crashed before its rename
            tmp.unlink(missing_ok=True)
        return records

    def save(self, record: JobRecord) -> None:
        self.write(record.id, record.model_dump_json().encode())

    def write(self, job_id: str, data: bytes) -> None:
        atomic_write_bytes(self.dir / f"{job_id}.json", data)
