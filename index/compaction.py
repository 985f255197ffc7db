"""Compaction: rewrite a collection with only its live points, densely relabelled, and swap it in.

Labels are never reused, so overwrites and deletes leave dead rows in every field's `vectors.f32`,
dead token slices, tombstoned graph nodes, and free pages in SQLite. A compaction builds a new
generation of the whole collection directory beside the old one and swaps it in:

1. **Copy.** Under the write lock, note the committed label count and which labels are alive. Off
   the lock, open a staging collection (`.<name>.compact-new`, a sibling the catalog never loads)
   and upsert the live points into it in label order, in batches: ids, payloads, and every vector
   bit for bit (`stored=True`: no second normalisation). They get labels 0, 1, 2, ... in the order
   they had, so a scan in label order (a replica's catch-up) sees the same order.
2. **Index.** The staging collection's own indexer builds its indexes from scratch (a rebuild, not a
   repair of the old graph: see docs/compaction.md for the numbers), trained once on the final rows.
3. **Catch up.** Writes go on into the old generation meanwhile. Rounds of catch-up replay them onto
   the staging one, as Qdrant's optimizer does with its copy-on-write segment: labels that died since
   the last round are deleted there by id, labels committed since are copied over.
4. **Swap.** Under the swap gate (no reader runs) and the write lock (no writer runs), the last
   writes are replayed, the staging store takes the old `seq`, a marker file says it is complete,
   and two renames in one directory make it the collection (`<name>` to `.<name>.compact-old`, the
   staging one to `<name>`). The collection object then reopens its state from the new directory.

A crash at any moment leaves either the old directory in place (the staging one is an orphan,
removed at open) or the complete staging one with the marker (renamed into place at open). Nothing
acknowledged is lost, because every acknowledged write is in the old generation until the marker
exists, and the marker is written only after the last replay, under the write lock.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from index import stamp
from index.backends.base import I64
from index.contract import PointIdT, SparseVec
from index.dense import DenseField
from index.disk import check_free
from index.fsutil import atomic_write_bytes, fsync_dir
from index.sparse import SparseField
from index.tenants import TenantGraphs
from index.usage import storage_usage
from nestor_client.models import IvfPqIndexConfig

if TYPE_CHECKING:
    from index.collection import Collection

__all__ = ["Cancelled", "compact", "recover", "recover_all", "staging_dirs"]

log = logging.getLogger("nestor.compaction")

MARKER = "COMPACTED"  # in the staging directory: complete, may replace the collection
BATCH = 1024  # points per copy batch
_ROUND_SECONDS = 0.5  # catch-up rounds while the staging index builds

Report = Callable[[str, int, int], None]  # (phase, done, total)


class Cancelled(Exception):
    """The collection is closing: the compaction stops and its staging directory goes."""


def staging_dirs(directory: Path) -> tuple[Path, Path]:
    """(the new generation being built, the old one parked during the swap): siblings whose names start
    with a dot, which is not a valid collection name, so the catalog never opens them as collections."""
    parent, name = directory.parent, directory.name
    return parent / f".{name}.compact-new", parent / f".{name}.compact-old"


def recover(directory: Path) -> None:
    """Finish or undo a swap a crash interrupted, then remove the leftovers (at open)."""
    new, old = staging_dirs(directory)
    if not directory.exists():
        if (new / MARKER).exists():  # crashed between the two renames: the new generation is complete
            new.rename(directory)
        elif old.exists():
            old.rename(directory)
        fsync_dir(directory.parent)
    _remove(new, old)
    if (directory / MARKER).exists():
        (directory / MARKER).unlink()
        fsync_dir(directory)


def _remove(*dirs: Path) -> None:
    """Remove generation directories for good: without the fsync of their parent a power cut brings
    them back whole (recovered again at the next open, but holding a second copy of the data till then)."""
    gone = False
    for d in dirs:
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
            gone = True
    if gone:
        fsync_dir(dirs[0].parent)


def recover_all(root: Path) -> None:
    """`recover` every collection under `root` that a compaction left a sibling of."""
    for d in sorted(root.iterdir()):
        for suffix in (".compact-new", ".compact-old"):
            if d.name.startswith(".") and d.name.endswith(suffix):
                recover(root / d.name[1 : -len(suffix)])


class _Replay:
    """What the staging generation holds of the old one: labels copied, and the id of each."""

    def __init__(self, coll: Collection, staging: Collection, cancel: threading.Event) -> None:
        self.coll, self.staging, self.cancel = coll, staging, cancel
        self.upto = 0  # old labels below this were looked at
        self.held = np.zeros(0, bool)  # old label -> its point is in the staging generation
        self.ids: list[PointIdT | None] = []  # old label -> id (the label map forgets dead labels' ids)

    def copy(self, labels: I64, report: Report | None = None, phase: str = "") -> None:
        """Copy the points of `labels` (old, sorted) that are still alive; they all lie at or past `upto`."""
        for s in range(0, len(labels), BATCH):
            if self.cancel.is_set():
                raise Cancelled
            got = _read(self.coll, labels[s : s + BATCH])
            if got is not None:
                kept, ids, vectors, payloads = got
                self.staging.upsert(ids, vectors, payloads, stored=True)
                self.held[kept] = True
                for lab, pid in zip(kept.tolist(), ids, strict=True):
                    self.ids[lab] = pid
            if report is not None:
                report(phase, min(s + BATCH, len(labels)), len(labels))

    def extend(self, n: int) -> None:
        grown = np.zeros(n, bool)
        grown[: len(self.held)] = self.held
        self.held = grown
        self.ids.extend([None] * (n - len(self.ids)))

    def catch_up(self) -> int:
        """Replay the old generation's writes since the last round; returns how many points changed.
        Exact under the write lock; without it, a later round corrects what a racing write tore."""
        coll = self.coll
        n = coll.labels.n  # first: the alive bits of labels below it are at least this new
        alive = coll.labels.alive[:n].copy()
        lo = self.upto
        died = np.flatnonzero(self.held[:lo] & ~alive[:lo])
        if len(died):
            self.staging.delete([pid for lab in died.tolist() if (pid := self.ids[lab]) is not None])
            self.held[died] = False
        self.extend(n)
        fresh = np.flatnonzero(alive[lo:n]).astype(np.int64) + lo
        self.copy(fresh)
        self.upto = n
        return len(died) + len(fresh)


def _read(
    coll: Collection, labels: I64
) -> tuple[I64, list[PointIdT], dict[str, Any], list[dict[str, Any] | None]] | None:
    """The points of the still-live `labels`: (their labels, ids, vectors by field, payloads), or None."""
    id_list = coll.labels.ids
    ids0 = [id_list[lab] for lab in labels.tolist()]
    payloads = coll.points.payloads(lab for lab, pid in zip(labels.tolist(), ids0, strict=True) if pid is not None)
    keep = np.fromiter(
        (pid is not None and lab in payloads for lab, pid in zip(labels.tolist(), ids0, strict=True)), bool, len(labels)
    )
    if not keep.any():
        return None
    kept = labels[keep]
    ids = [pid for pid, k in zip(ids0, keep.tolist(), strict=True) if k and pid is not None]
    pays = [orjson.loads(t) if (t := payloads[lab]) else None for lab in kept.tolist()]
    vectors: dict[str, Any] = {}
    for fname, f in coll.fields.items():
        present = f.alive[kept]
        if isinstance(f, DenseField):
            rows = f.vectors.take(kept)
            vectors[fname] = (
                rows if present.all() else [r if p else None for r, p in zip(rows, present.tolist(), strict=True)]
            )
        elif isinstance(f, SparseField):
            snap_s = f.store.snapshot()
            vectors[fname] = [
                SparseVec(*snap_s.row(lab)) if p else None
                for lab, p in zip(kept.tolist(), present.tolist(), strict=True)
            ]
        else:
            snap = f.tokens.snapshot()
            vectors[fname] = [
                snap.tokens(lab) if p else None for lab, p in zip(kept.tolist(), present.tolist(), strict=True)
            ]
    return kept, ids, vectors, pays


def _settled(staging: Collection) -> bool:
    """True when the staging generation's indexer has nothing left to do (or would train nothing yet)."""
    for f in staging.dense_fields():
        if f.plain_flat:
            continue
        if f.last_error is not None:
            raise RuntimeError(f"indexing the compacted vector {f.name!r} failed: {f.last_error}")
        st = f.state
        if f.phase == "training":
            return False
        if st.index is None:
            cfg = f.config
            threshold = cfg.training.threshold if cfg.compressed else None
            if threshold is None and isinstance(cfg.index, IvfPqIndexConfig):
                threshold = cfg.index.train_threshold
            if threshold is not None and f.count >= threshold:
                return False
            continue
        if st.upto < f.labels.n:
            return False
    return True


def _indexed(staging: Collection) -> tuple[int, int]:
    """(rows the staging indexes cover, rows to cover), over its dense vectors with an index to build."""
    fields = [f for f in staging.dense_fields() if not f.plain_flat]
    n = staging.labels.n
    return sum(min(f.state.upto, n) for f in fields), n * len(fields)


def _copy_side_files(coll: Collection, new_dir: Path) -> None:
    """The query samples (LeanVec-OOD) are not keyed by label: they move over as they are."""
    for f in coll.dense_fields():
        rel = f.dir.relative_to(coll.dir)
        for extra in ("query_sample.npy", "query_reservoir.npy"):
            src = f.dir / extra
            if src.is_file():
                atomic_write_bytes(new_dir / rel / extra, src.read_bytes())


def _set_seq(db: Path, seq: int) -> None:
    """The new generation continues the old one's write sequence (clients and replicas compare it)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            [("seq", seq), ("deaths_from", seq)],  # the staging copy's deaths are of its own seqs: a fresh log
        )
        conn.execute("DELETE FROM deaths")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def compact(coll: Collection, cancel: threading.Event, report: Report) -> dict[str, Any]:
    """Compact `coll` in place (see the module docstring); returns what it did."""
    t0 = time.perf_counter()
    new_dir, old_dir = staging_dirs(coll.dir)
    _remove(new_dir, old_dir)
    with coll._write_lock:
        n0 = coll.labels.n
        live0 = coll.labels.live_labels(n0)
        seq0 = coll.seq
    before = _disk_bytes(coll.dir)
    live = storage_usage(coll)
    needed = sum(u.disk_live for per in live.vectors.values() for u in per.values()) + live.store.disk_live
    check_free(coll.dir.parent, needed, coll.options.disk_min_free, "a compaction")  # room for the second copy
    options = replace(coll.options, optimizer_interval=0.0)  # the staging copy runs no optimizer of its own
    staging = type(coll).create(coll.name, new_dir, coll.config, options)
    swapped = False
    try:
        staging.pause_indexing()  # train once, on the final rows
        replay = _Replay(coll, staging, cancel)
        replay.extend(n0)
        replay.copy(live0, report, "copying")
        replay.upto = n0
        staging.resume_indexing()
        report("indexing", 0, 1)
        last = time.monotonic()
        while not _settled(staging):
            report("indexing", *_indexed(staging))
            if cancel.wait(0.05):
                raise Cancelled
            if time.monotonic() - last >= _ROUND_SECONDS:
                replay.catch_up()
                last = time.monotonic()
        report("catching up", 0, 1)
        staging._indexer.stop()  # later rows wait in the tail; its own saves must not race this one
        staging.save_indexes()  # off the lock
        for _ in range(3):  # bring it close off the lock, so the last round under it is short
            if replay.catch_up() == 0:
                break
        coll._indexer.stop()  # its saves must not run while the directory is swapped
        coll._indexer.join()  # stop() waits two minutes at most: a second indexer must never start
        report("swapping", 0, 1)
        try:
            with coll.snapshot_hold, coll._write_lock, _pending(coll):  # no writer (nor snapshot) from here on
                held = time.perf_counter()
                replay.catch_up()
                seq = coll.seq
                atomic_write_bytes(new_dir / "collection.json", coll.config.model_dump_json().encode())
                staging.close()
                _copy_side_files(coll, new_dir)
                _set_seq(new_dir / "points.sqlite", seq)
                atomic_write_bytes(new_dir / MARKER, str(seq).encode())
                fsync_dir(new_dir)
                coll.dir.rename(old_dir)
                new_dir.rename(coll.dir)
                fsync_dir(coll.dir.parent)
                stamp.bump()  # a follower loads the new generation (index/stamp.py)
                swapped = True
                (coll.dir / MARKER).unlink()
                # Readers go on with the old generation meanwhile; a reader thread that opens its first
                # SQLite connection now must find the old store, which has moved.
                coll.points.path = old_dir / "points.sqlite"
                try:
                    fresh = _open_generation(coll)
                except BaseException:  # undo the renames: the old generation stays the collection
                    coll.dir.rename(new_dir)
                    old_dir.rename(coll.dir)
                    fsync_dir(coll.dir.parent)
                    coll.points.path = coll.dir / "points.sqlite"
                    swapped = False
                    raise
                with coll.gate.swapping():  # no reader runs: the attributes move together
                    pause = time.perf_counter()
                    old_fields, old_points = coll.fields, coll.points
                    for key, value in fresh.items():
                        setattr(coll, key, value)
                    coll.tenants = TenantGraphs(coll, coll.options.exact_filter_threshold)
                    coll.generation += 1
                    paused = time.perf_counter() - pause
                for f in old_fields.values():
                    f.close()
                old_points.close()
                writers_waited = time.perf_counter() - held
        finally:
            coll._start_indexer()  # on the new generation, or again on the old one
    except BaseException:
        if not swapped:
            if not staging.closed:
                staging.close()
            _remove(new_dir)
        raise
    _remove(old_dir)
    fsync_dir(coll.dir)  # the marker's unlink (stale after the swap: it would only be removed again at open)
    after = _disk_bytes(coll.dir)
    result = {
        "points": coll.count,
        "labels_before": n0,
        "seq_before": seq0,
        "disk_before": before,
        "disk_after": after,
        "seconds": round(time.perf_counter() - t0, 3),
        "swap_seconds": round(paused, 4),  # readers waited this long
        "write_pause_seconds": round(writers_waited, 3),  # writers: the last replay and opening the new generation
    }
    log.info("collection %s compacted: %s", coll.name, result)
    return result


@contextmanager
def _pending(coll: Collection) -> Iterator[None]:
    """While the write lock is ours on the way to the swap: readers must not wait for it (WriterWait)."""
    coll.gate.pending.set()
    try:
        yield
    finally:
        coll.gate.pending.clear()


def _open_generation(coll: Collection) -> dict[str, Any]:
    """Open the new generation in `coll.dir` on a shell object sharing `coll`'s locks and settings, and
    return the attributes it opened (the stores, label map, fields, payload indexes, readers)."""
    shell = object.__new__(type(coll))
    shell.__dict__.update(vars(coll))  # name, dir, config, options, the locks, pauses, ...
    before = dict(vars(shell))
    shell._open_state()
    return {k: v for k, v in vars(shell).items() if k not in before or before[k] is not v}


def _disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
