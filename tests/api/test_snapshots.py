"""Snapshots through the API: create, list, download, delete, restore (new or same collection, or an
upload), consistency under a concurrent writer, and refusal of corrupt or truncated files."""

from __future__ import annotations

import hashlib
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nestor_client import NestorClient
from nestor_client.errors import ApiError, NestorError, NotFound
from tests.api.conftest import running, wait_indexed

DIM = 8


def _fill(c: NestorClient, name: str, n: int, seed: int = 0, **config: Any) -> np.ndarray:
    c.create_collection(name, dim=DIM, **config)
    vecs = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    c.upsert(name, ids=list(range(n)), vectors=vecs, payloads=[{"i": i} for i in range(n)])
    return vecs


def test_create_list_download_restore_delete(tmp_path: Path) -> None:
    with running(tmp_path / "data") as c:
        vecs = _fill(c, "docs", 300, index={"type": "hnsw", "m": 8, "ef_construction": 32})
        wait_indexed(c, "docs")
        manifest = tmp_path / "data" / "collections" / "docs" / "index" / "manifest.json"
        while not manifest.exists():  # the indexer persists its index once idle
            time.sleep(0.05)
        snap = c.create_snapshot("docs")
        assert snap.collection == "docs" and snap.count == 300 and snap.index_included
        assert [s.name for s in c.list_snapshots("docs")] == [snap.name]

        got = c.download_snapshot("docs", snap.name, tmp_path / "s.tar")
        assert got == snap.sha256 == hashlib.sha256((tmp_path / "s.tar").read_bytes()).hexdigest()
        with tarfile.open(tmp_path / "s.tar") as tar:
            names = tar.getnames()
        assert names[-1] == "manifest.json"
        assert {"collection.json", "points.sqlite", "vectors.f32"} <= set(names)

        # into a new collection
        info = c.restore_snapshot("copy", snap.name, source="docs")
        assert info.count == 300
        assert c.get("copy", [7])[0].payload == {"i": 7}
        assert c.search("copy", vecs[5], limit=1)[0].id == 5

        # into the same collection, after it changed: back to the snapshot's state
        c.delete("docs", ids=list(range(100)))
        c.upsert("docs", ids=[1000], vectors=vecs[:1])
        assert c.count("docs") == 201
        c.restore_snapshot("docs", snap.name)
        assert c.count("docs") == 300
        assert c.get("docs", [1000]) == []
        assert c.search("docs", vecs[42], limit=1)[0].id == 42

        # an upload, with its checksum
        info = c.upload_snapshot("uploaded", tmp_path / "s.tar", sha256=snap.sha256)
        assert info.count == 300

        assert c.delete_snapshot("docs", snap.name)
        assert c.list_snapshots("docs") == []
        for gone in (
            lambda: c.restore_snapshot("docs", snap.name),
            lambda: c.download_snapshot("docs", snap.name, tmp_path / "gone.tar"),
            lambda: c.delete_snapshot("docs", ".hidden"),
        ):
            with pytest.raises(ApiError) as err:
                gone()
            assert (err.value.status, err.value.type) == (404, "snapshot_not_found")
        with pytest.raises(ApiError) as err:  # no path escapes the snapshot folder
            c.delete_snapshot("docs", "../../collections/docs")
        assert err.value.status == 404
        with pytest.raises(NotFound):
            c.create_snapshot("no-such-collection")


def test_restored_collection_survives_a_restart(tmp_path: Path) -> None:
    with running(tmp_path / "data") as c:
        _fill(c, "a", 50, index={"type": "flat"})
        snap = c.create_snapshot("a")
        c.restore_snapshot("b", snap.name, source="a")
    with running(tmp_path / "data") as c:
        assert c.count("b") == 50
        assert [s.name for s in c.list_snapshots("a")] == [snap.name]


def test_multivector_round_trip(tmp_path: Path) -> None:
    with running(tmp_path / "data") as c:
        c.create_collection(
            "mv", dim=DIM, metric="dot", index={"type": "flat"},
            multivector={"type": "muvera", "k_sim": 2, "d_proj": 4, "r_reps": 2, "token_dtype": "int8"},
        )  # fmt: skip
        rng = np.random.default_rng(3)
        docs = [rng.standard_normal((int(rng.integers(1, 6)), DIM)).astype(np.float32) for _ in range(40)]
        c.upsert("mv", ids=list(range(40)), multivectors=docs)
        before = c.search("mv", multivector=docs[3], limit=5)
        snap = c.create_snapshot("mv")
        c.restore_snapshot("mv2", snap.name, source="mv")
        after = c.search("mv2", multivector=docs[3], limit=5)
        assert [h.id for h in after] == [h.id for h in before]
        assert [h.score for h in after] == pytest.approx([h.score for h in before])


def _corrupt(src: Path, dst: Path, offset: int) -> None:
    data = bytearray(src.read_bytes())
    data[offset] ^= 0xFF
    dst.write_bytes(bytes(data))


def test_corrupt_or_truncated_snapshots_are_refused(tmp_path: Path) -> None:
    with running(tmp_path / "data") as c:
        _fill(c, "docs", 200, index={"type": "flat"})
        snap = c.create_snapshot("docs")
        good = tmp_path / "good.tar"
        c.download_snapshot("docs", snap.name, good)
        size = good.stat().st_size

        with tarfile.open(good) as tar:
            member = tar.getmember("vectors.f32")
            manifest_at = tar.getmember("manifest.json").offset
        cases = {
            "truncated": good.read_bytes()[: size // 2],
            "truncated before the manifest": good.read_bytes()[:manifest_at],
            "truncated inside the manifest": good.read_bytes()[: manifest_at + 600],
            "not a tar": b"hello, not a snapshot" * 100,
        }
        bad = tmp_path / "bad.tar"
        _corrupt(good, bad, member.offset_data + 17)
        cases["a flipped byte"] = bad.read_bytes()
        for what, blob in cases.items():
            with pytest.raises(ApiError) as err:
                c.upload_snapshot("restored", blob)
            assert err.value.status == 422, what
            assert err.value.type == "invalid_snapshot", what
            assert "corrupt" in str(err.value) or "truncated" in str(err.value) or "not a" in str(err.value), what
        with pytest.raises(ApiError, match="checksum mismatch"):
            c.upload_snapshot("restored", good, sha256="0" * 64)
        assert "restored" not in [s.name for s in c.list_collections()]

        # a stored snapshot damaged on disk is refused too, and the target collection is untouched
        stored = tmp_path / "data" / "snapshots" / "docs" / f"{snap.name}.tar"
        _corrupt(stored, stored, size // 3)
        with pytest.raises(ApiError, match="checksum mismatch"):
            c.restore_snapshot("docs", snap.name)
        assert c.count("docs") == 200


def test_snapshot_is_consistent_under_concurrent_writes(tmp_path: Path) -> None:
    batch = 50
    with running(tmp_path / "data") as c:
        c.create_collection("w", dim=DIM, index={"type": "hnsw", "m": 8, "ef_construction": 32})
        stop = threading.Event()
        acked: list[int] = []
        errors: list[BaseException] = []

        def writer() -> None:
            rng = np.random.default_rng(9)
            b = 0
            try:
                while not stop.is_set():
                    ids = list(range(b * batch, (b + 1) * batch))
                    c.upsert("w", ids=ids, vectors=rng.standard_normal((batch, DIM)).astype(np.float32),
                             payloads=[{"b": b}] * batch)  # fmt: skip
                    if b % 4 == 3:  # and delete half of the previous batch
                        c.delete("w", ids=list(range((b - 1) * batch, (b - 1) * batch + batch // 2)))
                    acked.append(b)
                    b += 1
            except NestorError as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=writer)
        t.start()
        snaps = []
        try:
            while len(acked) < 5:
                stop.wait(0.01)
            for _ in range(3):
                snaps.append(c.create_snapshot("w"))
        finally:
            stop.set()
            t.join()
        assert not errors
        for i, snap in enumerate(snaps):
            name = f"r{i}"
            c.restore_snapshot(name, snap.name, source="w")
            assert c.count(name) == snap.count
            got = {r.id: r.payload for r in c.get(name, list(range(len(acked) * batch + batch)))}
            batches = sorted({p["b"] for p in got.values()})  # type: ignore[index]
            assert batches == list(range(len(batches))), "the snapshot holds a prefix of the batches"
            last = batches[-1]
            for b in batches:  # each batch is whole, less the deletes that came before the snapshot
                present = {i for i in got if int(i) // batch == b}
                full = set(range(b * batch, (b + 1) * batch))
                half = set(range(b * batch, b * batch + batch // 2))
                halved = (b + 1) % 4 == 3  # batch b + 1 deletes the first half of batch b after its upsert
                if halved and b + 1 < last:  # the delete came before batch b + 2
                    assert present == full - half, b
                elif halved and b + 1 == last:  # the snapshot may fall between batch b + 1 and the delete
                    assert present in (full, full - half), b
                else:
                    assert present == full, b
            hits = c.search(name, np.ones(DIM, np.float32), limit=10)
            assert len(hits) == min(10, snap.count)
