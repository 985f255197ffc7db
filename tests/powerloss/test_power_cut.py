"""Power cuts under a real `nestor serve` whose data directory is on lossyfs.

A cut is: kill -9 the server, roll the data directory back to what had been fsynced (file contents,
sizes and names: tests/powerloss/lossyfs.py), mount it again and restart the server on it. After the
restart every acknowledged write must be there with its payload and its vector bit for bit, no
acknowledged delete may come back, and an exact search must rank the live points as numpy does.

The rounds reuse the kill -9 harness (tests/e2e/test_crash_concurrent.py: two upsert clients that also
overwrite, two delete clients) with the cut between the kill and the restart, and indexes persisted
every fraction of a second, so cuts land during upserts, deletes, overwrites and index saves alike.
Every other round dies at a crash point instead of a random moment: lossyfs kills the server just
before its n-th fsync or rename, where the most written data is not yet durable.
CI runs a few rounds; `NESTOR_POWERCUT_ROUNDS=100` runs a long series (benchmarks/RELIABILITY.md).
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import sqlite3
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from nestor_client import NestorClient
from tests.e2e.oracle import check_exact_search, check_vectors
from tests.e2e.serverproc import ServerProcess
from tests.e2e.test_crash_concurrent import RoundResult, Truth, run_round
from tests.powerloss.mount import LossyMount

pytestmark = pytest.mark.e2e

ROUNDS = int(os.environ.get("NESTOR_POWERCUT_ROUNDS", "6"))
REPORT = os.environ.get("NESTOR_POWERCUT_REPORT")  # a JSON file for the long run's numbers
# The indexer persists an index 0.2 s after writes settle and at least every 0.5 s while they go on.
FAST_SAVES = {"NESTOR_INDEX_SAVE_IDLE_SECONDS": "0.2", "NESTOR_INDEX_SAVE_MAX_SECONDS": "0.5"}


def integrity_problems(data: Path) -> list[str]:
    """`PRAGMA integrity_check` of every collection's store as the cut left it (on a copy: opening the
    files in place would add a -shm file to the durable state)."""
    problems = []
    for db in sorted((data / "collections").glob("*/points.sqlite")):
        with tempfile.TemporaryDirectory() as tmp:
            for f in db.parent.glob("points.sqlite*"):
                shutil.copyfile(f, Path(tmp) / f.name)
            conn = sqlite3.connect(Path(tmp) / "points.sqlite")
            try:
                result = conn.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                conn.close()
            if result != "ok":
                problems.append(f"{db}: {result}")
    return problems


def _cut_and_remount(m: LossyMount, cuts: list[dict[str, int]], saved_index: list[bool]) -> None:
    cuts.append(m.power_cut())
    saved_index.append(any((m.backing / "collections").rglob("manifest.json")))
    cuts[-1]["integrity_problems"] = len(problems := integrity_problems(m.backing))
    assert problems == [], problems
    m.mount()


def _report(
    path: Path, results: list[RoundResult], cuts: list[dict[str, int]], saved_index: list[bool], seconds: float
) -> None:
    total = {k: sum(getattr(r, k) for r in results) for k in asdict(results[0]) if k != "kill_after"}
    keys = ("unsynced_blocks", "unsynced_entries", "integrity_problems", "killed_at_crash_point")
    total |= {k: sum(c[k] for c in cuts) for k in keys}
    total |= {"rounds": len(results), "cuts_after_an_index_save": sum(saved_index), "seconds": round(seconds)}
    total |= {"checked_present": results[-1].checked_present, "checked_absent": results[-1].checked_absent}
    path.write_text(
        json.dumps({"total": total, "rounds": [asdict(r) | c for r, c in zip(results, cuts, strict=True)]}, indent=1)
    )


def test_power_cuts_keep_every_acknowledged_write(lossy: LossyMount) -> None:
    started = time.monotonic()
    truth = Truth()
    cuts: list[dict[str, int]] = []
    saved_index: list[bool] = []
    results: list[RoundResult] = []
    for round_ in range(ROUNDS):
        res = run_round(
            lossy.mnt,
            round_,
            truth,
            min_kill=0.8,
            max_kill=2.5,
            env=FAST_SAVES,
            after_kill=lambda: _cut_and_remount(lossy, cuts, saved_index),
            # every other round dies at a crash point: just before its n-th fsync or rename, where the most
            # is unsynced; the others at a random moment, as kill -9 would
            after_start=functools.partial(lossy.arm, random.Random(round_).randint(5, 150)) if round_ % 2 else None,
        )
        results.append(res)
        if REPORT:
            _report(Path(REPORT), results, cuts, saved_index, time.monotonic() - started)
        assert res.lost == 0, res  # acknowledged upserts present with their last acknowledged version
        assert res.resurrected == 0, res
        assert res.torn == 0, res  # an unanswered batch is all there or not at all
        assert res.bad_vectors == 0 and res.search_errors == 0, truth.errors
        assert truth.errors == [], truth.errors  # the server started, and counted what it should
    assert sum(r.acked_upserts for r in results) > 50 * ROUNDS, results
    assert sum(r.acked_deletes for r in results) > 0, results
    # The cuts were real: each threw away writes that had not been fsynced (the -shm file at least,
    # usually more), and an index had been persisted before some of them.
    assert all(c["unsynced_blocks"] > 0 for c in cuts), cuts
    assert sum(c["killed_at_crash_point"] for c in cuts) > 0, cuts  # some rounds died at a crash point
    assert any(saved_index), saved_index


def test_a_fresh_data_directory_survives_a_power_cut(lossy: LossyMount) -> None:
    """Regression: the first collections of a new data directory were lost whole at a power cut.

    Nothing fsynced the data directory after `collections/` was made in it, nor `vectors/<name>/` after a
    named vector's folder and `vectors.f32` were created; fsync(2) of a file does not make its name
    durable. Now `index/fsutil.makedirs` and `fsync_tree` do."""
    rng = np.random.default_rng(7)
    plain = rng.standard_normal((5, 4)).astype(np.float32)
    a = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal((5, 3)).astype(np.float32)
    docs = [rng.standard_normal((i + 2, 4)).astype(np.float32) for i in range(5)]
    server = ServerProcess(lossy.mnt).start()
    try:
        with NestorClient(server.url) as c:
            c.create_collection("plain", dim=4, metric="dot")
            c.create_collection("named", vectors={"a": {"dim": 4, "metric": "dot"}, "b": {"dim": 3, "metric": "dot"}})
            c.upsert("plain", ids=list(range(5)), vectors=plain, payloads=[{"i": i} for i in range(5)])
            vecs = [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(5)]
            c.upsert("named", points=[{"id": i, "vector": vecs[i], "payload": {"i": i}} for i in range(5)])
            mv = {"type": "muvera", "k_sim": 2, "d_proj": 4, "r_reps": 2}  # token files and MUVERA state
            c.create_collection("tokens", dim=4, metric="dot", multivector=mv)
            c.upsert("tokens", ids=list(range(5)), multivectors=docs)
            # as stored, at the token store's precision
            stored = [r.multivector for r in c.get("tokens", list(range(5)), with_vector=True)]
        server.kill9()
    finally:
        server.stop()
    assert lossy.power_cut()["unsynced_blocks"] > 0
    lossy.mount()
    server = ServerProcess(lossy.mnt).start()
    try:
        with NestorClient(server.url) as c:
            assert [r.payload for r in c.get("plain", list(range(5)))] == [{"i": i} for i in range(5)]
            assert check_vectors(c, "plain", dict(enumerate(plain))) == []
            assert check_exact_search(c, "plain", dict(enumerate(plain)), plain[0], limit=5) == []
            got = c.get("named", list(range(5)), with_vector=True)
            assert [r.payload for r in got] == [{"i": i} for i in range(5)]
            for r in got:
                vec = r.vector
                assert isinstance(vec, dict)
                want_a, want_b = a[int(r.id)], b[int(r.id)]  # type: ignore[arg-type]
                assert np.asarray(vec["a"], np.float32).tobytes() == want_a.tobytes()
                assert np.asarray(vec["b"], np.float32).tobytes() == want_b.tobytes()
            got = c.get("tokens", list(range(5)), with_vector=True)
            assert [r.multivector for r in got] == stored and all(m is not None for m in stored)
    finally:
        server.stop()


def test_snapshots_payload_indexes_restores_and_collection_deletes_survive_a_cut(lossy: LossyMount) -> None:
    """The acknowledged admin operations: a payload index, a snapshot, a restore into a new collection
    and a collection delete are all still so after a power cut (and the deleted collection stays gone)."""
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((60, 8)).astype(np.float32)
    server = ServerProcess(lossy.mnt).start()
    try:
        with NestorClient(server.url) as c:
            c.create_collection("c", dim=8, metric="dot")
            c.upsert("c", ids=list(range(60)), vectors=vecs, payloads=[{"k": f"t{i % 3}"} for i in range(60)])
            assert c.create_payload_index("c", "k", "keyword")
            snap = c.create_snapshot("c")
            c.delete("c", ids=list(range(50, 60)))
            c.restore_snapshot("r", snap.name, source="c")
            c.create_collection("gone", dim=8, metric="dot")
            c.upsert("gone", ids=[1], vectors=vecs[:1])
            assert c.delete_collection("gone")
        server.kill9()
    finally:
        server.stop()
    lossy.power_cut()
    lossy.mount()
    server = ServerProcess(lossy.mnt).start()
    try:
        with NestorClient(server.url) as c:
            assert sorted(s.name for s in c.list_collections()) == ["c", "r"]
            live = {i: vecs[i] for i in range(50)}
            assert c.count("c") == 50 and check_vectors(c, "c", live) == []
            assert check_exact_search(c, "c", live, vecs[0], limit=50) == []
            assert "k" in c.get_collection("c").payload_schema
            assert c.count("c", filter={"must": [{"key": "k", "match": {"value": "t1"}}]}) == 17
            assert [s.name for s in c.list_snapshots("c")] == [snap.name]
            restored = {i: vecs[i] for i in range(60)}
            assert c.count("r") == 60 and check_vectors(c, "r", restored) == []
            c.restore_snapshot("again", snap.name, source="c")  # the snapshot's tar is whole
            assert c.count("again") == 60
    finally:
        server.stop()


def test_an_ingest_job_cut_mid_way_resumes_with_exactly_the_source_ids(lossy: LossyMount, tmp_path: Path) -> None:
    """The job record (acknowledged when the job was created) and its checkpoint survive the cut; the job
    resumes from its last durable checkpoint and ends with every source id once."""
    n = 12_000
    ids = [f"doc-{i}" for i in range(n)]
    src = tmp_path / "src.jsonl"  # the source is off the lossy mount: only the data directory loses power
    src.write_text(
        "".join(json.dumps({"id": pid, "text": f"row {i} word{i % 97}"}) + "\n" for i, pid in enumerate(ids))
    )
    env = {"NESTOR_INGEST_ROOTS": str(tmp_path)}
    server = ServerProcess(lossy.mnt, env=env).start()
    try:
        with NestorClient(server.url) as c:
            c.create_collection("docs", dim=16, encoder={"name": "hash", "config": {"dim": 16}}, index={"type": "flat"})
            job = c.ingest("docs", src, batch_size=250)
            deadline = time.monotonic() + 120
            while (done := c.get_job(job.id).done) < 1_500:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        server.kill9()
    finally:
        server.stop()
    assert done < n, "the job finished before the cut; the test proves nothing"
    lossy.power_cut()
    lossy.mount()
    server = ServerProcess(lossy.mnt, env=env).start()
    try:
        with NestorClient(server.url) as c:
            final = c.wait_job(job.id, poll=0.05, timeout=240)
            assert final.state.value == "succeeded", final.error
            assert (final.done, final.total, final.failed) == (n, n, 0)
            assert c.count("docs") == n
            found = [r.id for s in range(0, n, 5_000) for r in c.get("docs", ids[s : s + 5_000], with_payload=False)]
            assert sorted(found) == sorted(ids)  # every source id, and (with the count) nothing else
    finally:
        server.stop()
