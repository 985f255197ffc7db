"""`nestor serve --processes 2`: a primary and a read-only follower on one port and one data directory.

Every request below opens its own connection, so the kernel hands it to either process; a follower
marks its answers (`x-nestor-follower`: "local" for a search it served, "forwarded" for what the
primary answered through it). Each check repeats until both processes have answered it, and every
answer must be right: read-your-writes across processes, after upserts, overwrites, deletes, payload
changes, a payload index and a compaction; writes forwarded by the follower; a follower killed."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.e2e.serverproc import ServerProcess, nestor_command

pytestmark = pytest.mark.e2e

DIM = 8
NAME = "c"
TRIES = 400  # fresh connections before giving up on reaching both processes


def _served_by(r: httpx.Response) -> str:
    how = r.headers.get("x-nestor-follower", "")
    return "follower" if how.startswith("local") else "forwarded" if how else "primary"


def _search(url: str, vector: np.ndarray, flt: dict[str, Any] | None = None, limit: int = 5) -> httpx.Response:
    body: dict[str, Any] = {"vector": vector.tolist(), "limit": limit, "with_payload": True}
    if flt is not None:
        body["filter"] = flt
    r = httpx.post(f"{url}/collections/{NAME}/points/search", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r


def _on_both(url: str, vector: np.ndarray, check: Callable[[list[dict[str, Any]]], None], **kw: Any) -> None:
    """Search until the primary and the follower have both answered; every answer must pass `check`."""
    seen: set[str] = set()
    for _ in range(TRIES):
        r = _search(url, vector, **kw)
        check(r.json()["result"])
        seen.add(_served_by(r))
        if {"primary", "follower"} <= seen:
            return
    pytest.fail(f"only {seen} answered in {TRIES} searches")


def _upsert(url: str, points: list[dict[str, Any]]) -> httpx.Response:
    r = httpx.put(f"{url}/collections/{NAME}/points", json={"points": points}, timeout=60)
    assert r.status_code == 200, r.text
    return r


def _point(pid: int, v: np.ndarray, **payload: Any) -> dict[str, Any]:
    return {"id": pid, "vector": v.tolist(), "payload": payload}


def _top(pid: int) -> Callable[[list[dict[str, Any]]], None]:
    def check(hits: list[dict[str, Any]]) -> None:
        assert hits and hits[0]["id"] == pid, hits

    return check


def _ids(hits: list[dict[str, Any]]) -> set[int]:
    return {h["id"] for h in hits}


@pytest.fixture()
def server(tmp_path: Path) -> Any:
    srv = ServerProcess(tmp_path / "data", args=["--processes", "2"]).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_read_your_writes_across_processes(server: ServerProcess) -> None:
    url = server.url
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((60, DIM)).astype(np.float32)
    r = httpx.put(f"{url}/collections/{NAME}", json={"dim": DIM, "metric": "cosine"}, timeout=60)
    assert r.status_code == 200, r.text
    _upsert(url, [_point(i, vecs[i], color="red" if i % 2 else "blue") for i in range(60)])
    _on_both(url, vecs[7], _top(7))

    # an overwrite: the new vector finds 7, the old one no longer does
    new7 = rng.standard_normal(DIM).astype(np.float32)
    for _ in range(6):  # write then read at once, each on any process
        _upsert(url, [_point(7, new7, color="green")])
        _on_both(url, new7, _top(7))
    _on_both(url, vecs[7], lambda hits: _ids(hits).isdisjoint({7}) or hits[0]["score"] < 0.999)

    # a payload change alone, seen by a filter
    green = {"must": [{"key": "color", "match": {"value": "green"}}]}
    _on_both(url, vecs[9], lambda hits: _ids(hits) == {7}, flt=green)
    _upsert(url, [_point(9, vecs[9], color="green")])
    _on_both(url, vecs[9], lambda hits: _ids(hits) == {7, 9}, flt=green)

    # a payload index (collection.json rewritten) answers the same
    index = {"field_name": "color", "field_schema": "keyword"}
    r = httpx.put(f"{url}/collections/{NAME}/index", json=index, timeout=60)
    assert r.status_code == 200, r.text
    _on_both(url, vecs[9], lambda hits: _ids(hits) == {7, 9}, flt=green)

    # deletes
    r = httpx.post(f"{url}/collections/{NAME}/points/delete", json={"ids": list(range(10, 50))}, timeout=60)
    assert r.status_code == 200, r.text
    _on_both(url, vecs[12], lambda hits: _ids(hits).isdisjoint(range(10, 50)), limit=20)

    # a compaction swaps in a new generation; then a write after it
    r = httpx.post(f"{url}/collections/{NAME}/optimize?wait=true", timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["status"] == "completed"
    _on_both(url, vecs[55], _top(55))
    _on_both(url, vecs[12], lambda hits: _ids(hits).isdisjoint(range(10, 50)), limit=20)
    _upsert(url, [_point(12, vecs[12], color="blue")])
    _on_both(url, vecs[12], _top(12))


def test_follower_forwards_writes_and_survives_kill(server: ServerProcess) -> None:
    url = server.url
    rng = np.random.default_rng(3)
    r = httpx.put(f"{url}/collections/{NAME}", json={"dim": DIM, "metric": "cosine"}, timeout=60)
    assert r.status_code == 200, r.text
    forwarded: set[str] = set()
    bad_seen: set[str] = set()
    follower_pid = 0
    upserted = 0
    for i in range(TRIES):
        if {"forwarded"} <= forwarded and {"primary", "forwarded"} <= bad_seen:
            break
        v = rng.standard_normal(DIM).astype(np.float32)
        r = _upsert(url, [_point(1000 + i, v)])
        upserted += 1
        forwarded.add(_served_by(r))
        if _served_by(r) == "forwarded":
            follower_pid = int(r.headers["x-nestor-follower"].split()[1])
        _on_both(url, v, _top(1000 + i))  # a write through either process is visible on both
        # bad input is refused by the primary, whichever process took it, and changes nothing
        short = {"points": [{"id": 1, "vector": [1.0, 2.0]}]}
        bad = httpx.put(f"{url}/collections/{NAME}/points", json=short, timeout=60)
        assert bad.status_code == 422, bad.text
        bad_seen.add(_served_by(bad))
    assert "forwarded" in forwarded and {"primary", "forwarded"} <= bad_seen, (forwarded, bad_seen)
    count = httpx.post(f"{url}/collections/{NAME}/points/count", json={}, timeout=60).json()["result"]["count"]
    assert count == upserted  # the bad batches wrote nothing

    os.kill(follower_pid, signal.SIGKILL)
    v = rng.standard_normal(DIM).astype(np.float32)
    _upsert(url, [_point(5, v)])
    deadline = time.monotonic() + 60
    while True:  # the supervisor starts a new follower; until then the primary answers alone
        try:
            _on_both(url, v, _top(5))
            break
        except pytest.fail.Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    for _ in range(TRIES):  # the answer came from a new follower, not the one killed
        r = _search(url, v)
        if _served_by(r) == "follower":
            assert int(r.headers["x-nestor-follower"].split()[1]) != follower_pid
            break
    else:
        pytest.fail("no follower answered")


def test_supervisor_killed_takes_its_children(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data", args=["--processes", "2"]).start()
    try:
        assert srv.proc is not None
        deadline = time.monotonic() + 60
        while len(children := _children(srv.proc.pid)) < 2:  # the follower starts once the primary is ready
            assert time.monotonic() < deadline, children
            time.sleep(0.1)
        srv.kill9()
    finally:
        srv.stop()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{c}").exists() and "zombie" not in _state(c) for c in children):
        assert time.monotonic() < deadline, "a child outlived the supervisor"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (FileNotFoundError, IndexError):
        return "zombie"


def test_processes_refused_with_ray(tmp_path: Path) -> None:
    cmd = [*nestor_command(), "serve", "--processes", "2", "--ray-address", "local", "--data-dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, timeout=60)
    assert done.returncode == 2 and b"--ray-address" in done.stderr


# (who answered, status): the follower's own gate and the primary's, and a write relayed to the primary
EVERY_ANSWER = {("follower", 401), ("primary", 401), ("follower", 200), ("primary", 200), ("forwarded", 403)}


def test_keys_hold_on_every_process(tmp_path: Path) -> None:
    keys = {"admin": "admin-key-0123456789", "read": "read-key-0123456789"}
    entries = ",".join(f"{role}:{hashlib.sha256(k.encode()).hexdigest()}" for role, k in keys.items())
    srv = ServerProcess(tmp_path / "data", env={"NESTOR_API_KEYS": entries}, args=["--processes", "2"]).start()
    try:
        admin, read = ({"api-key": keys[r]} for r in ("admin", "read"))
        # 60 s: a create on a loaded CI machine took longer than httpx's default 5 s once
        r = httpx.put(f"{srv.url}/collections/{NAME}", json={"dim": DIM, "metric": "cosine"}, headers=admin, timeout=60)
        assert r.status_code == 200, r.text
        v = np.ones(DIM, np.float32)
        body = {"vector": v.tolist(), "limit": 1}
        seen: dict[tuple[str, int], int] = {}
        for i in range(TRIES):
            url = f"{srv.url}/collections/{NAME}/points"
            for headers, want in (({}, 401), (read, 200)):  # a search: refused without a key, on either process
                r = httpx.post(f"{url}/search", json=body, headers=headers, timeout=60)
                assert r.status_code == want, r.text
                seen[_served_by(r), want] = 1
            r = httpx.put(url, json={"points": [_point(i, v)]}, headers=read, timeout=60)  # a write with a read key
            assert r.status_code == 403, r.text
            seen[_served_by(r), 403] = 1
            if EVERY_ANSWER <= set(seen):
                break
        else:
            pytest.fail(f"not every process answered: {sorted(seen)}")
        count = httpx.post(f"{srv.url}/collections/{NAME}/points/count", json={}, headers=admin, timeout=60)
        assert count.json()["result"]["count"] == 0  # the refused writes wrote nothing
    finally:
        srv.stop()
