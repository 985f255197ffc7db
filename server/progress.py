"""Following a job from a terminal: a progress bar (rows, rate, ETA) fed by polling `GET /jobs/{id}`."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from nestor_client import JobInfo, JobState, NestorClient

__all__ = ["follow_job", "summary"]


def follow_job(client: NestorClient, job: JobInfo, *, out: TextIO = sys.stderr, poll: float = 0.5) -> JobInfo:
    """Draw `job`'s progress until it ends; Ctrl-C cancels the job. Returns its final state."""
    bar = tqdm(total=job.total, unit=" rows", desc=job.collection, file=out, dynamic_ncols=True)

    def update(info: JobInfo) -> None:
        if info.total is not None and bar.total != info.total:
            bar.total = info.total
        bar.update(info.done - bar.n)
        if info.failed:
            bar.set_postfix(bad=info.failed, refresh=False)

    try:
        final = client.wait_job(job.id, poll=poll, on_progress=update)
    except KeyboardInterrupt:
        bar.close()
        final = client.cancel_job(job.id)
        print(f"interrupted: job {job.id} is {final.state.value}", file=out)
        return final
    bar.close()
    return final


def summary(job: JobInfo) -> str:
    rate = f", {job.rate:,.0f} rows/s" if job.rate else ""
    text = f"job {job.id} {job.state.value}: {job.done:,} rows read, {job.upserted:,} upserted{rate}"
    if job.failed:
        text += f", {job.failed:,} bad rows"
        text += "".join(f"\n  line {e.line}: {e.reason}" for e in job.errors[:5])
        if job.failed > 5:
            text += f"\n  ... ({job.failed - 5:,} more: GET /jobs/{job.id})"
    if job.error and job.state is JobState.failed:
        text += f"\n  error: {job.error}"
    return text
