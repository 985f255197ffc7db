"""Ingest sources are confined to NESTOR_INGEST_ROOTS: the usual escapes get 403 naming the setting.

Layout of each test: `tmp/allowed` is the root, `tmp/outside/secret.jsonl` a readable file beyond it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nestor_client import Forbidden, InvalidSource, JobState, NestorClient
from server.ingest.errors import SourceForbidden
from server.ingest.roots import IngestRoots
from tests.api.conftest import running

ROW = {"id": 1, "vector": [1.0, 0.0, 0.0, 0.0], "secret": "the server's file"}


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "ok.jsonl").write_text(json.dumps(ROW) + "\n")
    (outside / "secret.jsonl").write_text(json.dumps(ROW) + "\n")
    return allowed, outside


@pytest.fixture
def client(tmp_path: Path, dirs: tuple[Path, Path]) -> Iterator[NestorClient]:
    with running(tmp_path / "data", ingest_roots=[dirs[0]]) as c:
        c.create_collection("c", dim=4, index={"type": "flat"})
        yield c


def _refused(client: NestorClient, path: str | Path, **options: Any) -> str:
    with pytest.raises(Forbidden) as err:
        client.ingest("c", path, **options)
    assert "NESTOR_INGEST_ROOTS" in str(err.value)
    assert client.list_jobs() == []  # nothing was queued
    return str(err.value)


def test_an_allowed_path_is_loaded(client: NestorClient, dirs: tuple[Path, Path]) -> None:
    job = client.wait_job(client.ingest("c", dirs[0] / "ok.jsonl").id, poll=0.02, timeout=30)
    assert job.state is JobState.succeeded and client.count("c") == 1
    assert job.total == 1


def test_dot_dot_out_of_the_root_is_refused(client: NestorClient, dirs: tuple[Path, Path]) -> None:
    _refused(client, f"{dirs[0]}/../outside/secret.jsonl")
    _refused(client, f"{dirs[0]}/sub/../../outside/secret.jsonl")  # through a missing dir too


def test_absolute_paths_elsewhere_are_refused_whether_or_not_they_exist(client: NestorClient) -> None:
    assert "outside" in _refused(client, "/etc/passwd", format="jsonl")
    assert "outside" in _refused(client, "/etc/passwd")  # 403 before "cannot tell the format" (422)
    assert "outside" in _refused(client, "/etc/no-such-file.jsonl")  # the same answer: no oracle


def test_a_symlink_inside_the_root_pointing_out_is_refused(client: NestorClient, dirs: tuple[Path, Path]) -> None:
    allowed, outside = dirs
    (allowed / "link.jsonl").symlink_to(outside / "secret.jsonl")
    (allowed / "dirlink").symlink_to(outside, target_is_directory=True)
    _refused(client, allowed / "link.jsonl")
    _refused(client, allowed / "dirlink" / "secret.jsonl")
    assert client.count("c") == 0


def test_sidecar_paths_are_confined_too(client: NestorClient, dirs: tuple[Path, Path]) -> None:
    allowed, outside = dirs
    np.save(allowed / "v.npy", np.ones((1, 4), np.float32))
    (outside / "ids.txt").write_text("1\n")
    with pytest.raises(Forbidden, match="ids_path"):
        client.ingest("c", allowed / "v.npy", ids_path=str(outside / "ids.txt"))
    with pytest.raises(Forbidden, match="payload_path"):
        client.ingest("c", allowed / "v.npy", payload_path=str(outside / "secret.jsonl"))


def test_a_path_with_a_nul_byte_is_refused(client: NestorClient, dirs: tuple[Path, Path]) -> None:
    msg = _refused(client, f"{dirs[0]}/ok.jsonl\x00/../../outside/secret.jsonl")
    assert "NUL" in msg


def test_a_missing_file_inside_the_root_is_still_422(client: NestorClient, dirs: tuple[Path, Path]) -> None:
    with pytest.raises(InvalidSource, match="not a file"):
        client.ingest("c", dirs[0] / "missing.jsonl")
    with pytest.raises(InvalidSource, match="not a regular file"):
        client.ingest("c", dirs[0], format="jsonl")  # the root itself: a directory


def test_a_symlinked_root_is_resolved(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    allowed, outside = dirs
    (tmp_path / "root-link").symlink_to(allowed, target_is_directory=True)
    with running(tmp_path / "data", ingest_roots=[tmp_path / "root-link"]) as c:
        c.create_collection("c", dim=4, index={"type": "flat"})
        for src in (tmp_path / "root-link" / "ok.jsonl", allowed / "ok.jsonl"):  # through the link or not
            assert c.wait_job(c.ingest("c", src).id, poll=0.02, timeout=30).state is JobState.succeeded
        with pytest.raises(Forbidden, match="NESTOR_INGEST_ROOTS"):
            c.ingest("c", tmp_path / "root-link" / ".." / "outside" / "secret.jsonl")


def test_by_default_only_the_upload_directory_is_allowed(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    with running(tmp_path / "data", ingest_roots=[]) as c:
        c.create_collection("c", dim=4, index={"type": "flat"})
        with pytest.raises(Forbidden, match="NESTOR_INGEST_ROOTS"):
            c.ingest("c", dirs[0] / "ok.jsonl")
        job = c.wait_job(c.ingest_file("c", dirs[0] / "ok.jsonl").id, poll=0.02, timeout=30)
        assert job.state is JobState.succeeded and c.count("c") == 1


def test_a_swap_between_the_check_and_the_open_is_caught(
    monkeypatch: pytest.MonkeyPatch, dirs: tuple[Path, Path]
) -> None:
    """The check sees a stale resolution (realpath taken before the swap); the open-time check still refuses."""
    allowed, outside = dirs
    (allowed / "d").symlink_to(outside, target_is_directory=True)  # was a real directory at check time
    (allowed / "f.jsonl").symlink_to(outside / "secret.jsonl")  # was a regular file at check time
    roots = IngestRoots([allowed])
    monkeypatch.setattr("server.ingest.roots.os.path.realpath", os.path.abspath)
    with pytest.raises(SourceForbidden, match="NESTOR_INGEST_ROOTS"):
        roots.confine(str(allowed / "d" / "secret.jsonl"))  # a directory on the way: /proc/self/fd
    with pytest.raises(SourceForbidden, match="NESTOR_INGEST_ROOTS"):
        roots.confine(str(allowed / "f.jsonl"))  # the last component: O_NOFOLLOW
    assert roots.confine(str(allowed / "ok.jsonl")) == allowed / "ok.jsonl"
    monkeypatch.setattr("server.ingest.roots._PROC_FD", allowed / "no-proc")  # no /proc: O_NOFOLLOW alone
    with pytest.raises(SourceForbidden, match="NESTOR_INGEST_ROOTS"):
        roots.confine(str(allowed / "f.jsonl"))


def test_a_job_is_confined_again_when_it_resumes(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    """Roots narrowed across a restart: a queued job outside them fails instead of reading the file."""
    with running(tmp_path / "data", ingest_roots=[dirs[0]], job_workers=1) as c:
        c.create_collection("c", dim=4, index={"type": "flat"})
        job = c.wait_job(c.ingest("c", dirs[0] / "ok.jsonl").id, poll=0.02, timeout=30)
    record = tmp_path / "data" / "jobs" / f"{job.id}.json"
    state = json.loads(record.read_text())
    state.update(state="queued", done=0, total=None, cursor={}, upserted=0)
    record.write_text(json.dumps(state))
    with running(tmp_path / "data", ingest_roots=[]) as c:
        again = c.wait_job(job.id, poll=0.02, timeout=30)
        assert again.state is JobState.failed and again.upserted == 0
        assert "NESTOR_INGEST_ROOTS" in json.dumps(again.model_dump(mode="json"))
