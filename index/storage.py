"""The store of record: SQLite in WAL mode with `synchronous=FULL`.

One row per live point: its id (JSON-encoded, so 7 and "7" differ), its current internal label,
its payload (JSON text) and the `seq` of the write that made it. The `meta` table holds the
collection's `seq` and `next_label`. Each write batch is one transaction, so a batch is atomic and
an acknowledged batch survives a crash.

The `deaths` table logs the (label, id) of each point a delete removed, keyed by the delete's `seq`, in
the delete's own transaction: a follower process catches up from it (index/catchup.py), since a deleted
row is gone. Overwrites need no entry (the new row names the id, whose old label the follower knows;
the id of a point overwritten and then deleted is in the delete's entry). `meta.deaths_from` says from
which `seq` on the log is complete (a compaction's new generation starts it afresh). Without compactions
the log would grow with every delete, so past `_DEATHS_CAP` rows a delete drops its oldest half (in the
same transaction) and moves `deaths_from` up: a follower that far behind loads the collection whole.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index import stamp
from index.filter_check import parse_datetime

__all__ = ["PointStore", "decode_pid", "encode_pid"]

PointIdT = int | str

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    pid TEXT PRIMARY KEY,
    label INTEGER NOT NULL UNIQUE,
    payload TEXT,
    seq INTEGER NOT NULL,
    vmask INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_DEATHS = """
CREATE TABLE deaths (seq INTEGER NOT NULL, label INTEGER NOT NULL, pid TEXT NOT NULL, PRIMARY KEY (seq, label))
    WITHOUT ROWID;
INSERT OR IGNORE INTO meta(key, value) SELECT 'deaths_from', coalesce((SELECT value FROM meta WHERE key = 'seq'), 0);
"""

# SQLite caps bound variables per statement; stay well below.
_CHUNK = 900
_DEATHS_CAP = 1_000_000  # deaths log rows kept at most (~40 MB); a follower further behind reloads


def encode_pid(pid: PointIdT) -> str:
    return str(pid) if isinstance(pid, int) else json.dumps(pid)


def decode_pid(text: str) -> PointIdT:
    return json.loads(text) if text.startswith('"') else int(text)


class PointStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        self._migrate()
        self._deaths = int(self._writer.execute("SELECT count(*) FROM deaths").fetchone()[0])
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.create_function("nestor_datetime", 1, _sql_datetime, deterministic=True)  # datetime ranges (filters)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _reader(self) -> sqlite3.Connection:
        # One connection per thread: in WAL mode readers never block the writer.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _migrate(self) -> None:
        """Bring a store written by an older Nestor up to this schema, once, in one transaction."""
        cols = {row[1] for row in self._writer.execute("PRAGMA table_info(points)")}
        if "vmask" not in cols:  # before named vectors: every point had its one vector
            self._writer.execute("ALTER TABLE points ADD COLUMN vmask INTEGER")
        if not self._writer.execute("SELECT 1 FROM sqlite_master WHERE name = 'deaths'").fetchone():
            # the log is complete from now on: a follower behind this seq loads the collection whole
            self._writer.executescript(f"BEGIN IMMEDIATE; {_DEATHS} COMMIT;")

    # -- recovery -------------------------------------------------------------------------

    def meta(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._writer.execute("SELECT key, value FROM meta")}

    def all_labels(self) -> list[tuple[str, int, int | None]]:
        """(id, label, vmask) of every point; vmask None: the point has every vector of the collection."""
        return list(self._writer.execute("SELECT pid, label, vmask FROM points"))

    # -- writes (the caller serialises them) ----------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed, then the write stamp bumped before the caller acknowledges
        (followers look again: index/stamp.py); rolled back on any error."""
        cur = self._writer
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        stamp.bump()

    def upsert(self, rows: Sequence[tuple[str, int, str | None, int | None]], *, seq: int, next_label: int) -> None:
        """Rows of (id, label, payload JSON, vmask: the bits of the vectors the point has, None for all)."""
        with self._write() as cur:
            cur.executemany(
                "INSERT INTO points(pid, label, payload, seq, vmask) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(pid) DO UPDATE SET label=excluded.label, payload=excluded.payload, "
                "seq=excluded.seq, vmask=excluded.vmask",
                [(pid, label, payload, seq, vmask) for pid, label, payload, vmask in rows],
            )
            self._set_meta(seq=seq, next_label=next_label)

    def delete(self, pids: Sequence[str], *, seq: int) -> list[int]:
        """Delete by id; returns the labels that were live."""
        with self._write() as cur:
            rows: list[tuple[str, int]] = []
            for i in range(0, len(pids), _CHUNK):
                chunk = pids[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows += cur.execute(f"DELETE FROM points WHERE pid IN ({marks}) RETURNING pid, label", chunk)
            self._log_deaths(rows, seq)
            labels = [label for _, label in rows]
            self._set_meta(seq=seq)
        return labels

    def delete_where(self, where: str, params: Sequence[Any], *, seq: int) -> list[tuple[str, int]]:
        with self._write() as cur:
            rows = list(cur.execute(f"DELETE FROM points WHERE {where} RETURNING pid, label", params))
            self._log_deaths(rows, seq)
            self._set_meta(seq=seq)
        return rows

    def delete_labels(self, labels: Sequence[int], *, seq: int) -> list[tuple[str, int]]:
        """Delete the points holding `labels` (a payload index chose them); returns (id, label) of each."""
        with self._write() as cur:
            rows: list[tuple[str, int]] = []
            for i in range(0, len(labels), _CHUNK):
                chunk = labels[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows += cur.execute(f"DELETE FROM points WHERE label IN ({marks}) RETURNING pid, label", chunk)
            self._log_deaths(rows, seq)
            self._set_meta(seq=seq)
        return rows

    def _log_deaths(self, rows: Sequence[tuple[str, int]], seq: int) -> None:
        """In the delete's transaction: (id, label) of each point it removed, for followers (index/catchup.py)."""
        self._writer.executemany(
            "INSERT OR IGNORE INTO deaths(seq, label, pid) VALUES (?, ?, ?)", [(seq, lab, pid) for pid, lab in rows]
        )
        self._deaths += len(rows)
        if self._deaths > _DEATHS_CAP:
            self._trim_deaths()

    def _trim_deaths(self) -> None:
        """Keep the newest half of the cap, cut at a `seq` boundary (the log stays complete after `deaths_from`)."""
        w = self._writer
        cut = w.execute("SELECT seq FROM deaths ORDER BY seq DESC LIMIT 1 OFFSET ?", (_DEATHS_CAP // 2,)).fetchone()
        if cut is None:
            return
        w.execute("DELETE FROM deaths WHERE seq <= ?", (cut[0],))
        w.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'deaths_from'", (cut[0],))
        self._deaths = int(w.execute("SELECT count(*) FROM deaths").fetchone()[0])

    def _set_meta(self, **values: int) -> None:
        self._writer.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            list(values.items()),
        )

    # -- reads ----------------------------------------------------------------------------

    def select_labels(self, where: str, params: Sequence[Any]) -> npt.NDArray[np.int64]:
        rows = self._reader().execute(f"SELECT label FROM points WHERE {where}", params).fetchall()
        out = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        out.sort()
        return out

    def payload_rows(self, since_seq: int = -1) -> tuple[int, list[tuple[int, str | None]]]:
        """(seq, [(label, payload JSON)]) of every point written after `since_seq`, read in one transaction
        so that the rows are exactly those of the store at `seq` (a payload index builds from them)."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
            rows = conn.execute("SELECT label, payload FROM points WHERE seq > ?", (since_seq,)).fetchall()
        finally:
            conn.execute("COMMIT")
        return (int(row[0]) if row else 0), rows

    def count_where(self, where: str, params: Sequence[Any]) -> int:
        row = self._reader().execute(f"SELECT count(*) FROM points WHERE {where}", params).fetchone()
        return int(row[0])

    def payloads(self, labels: Iterable[int]) -> dict[int, str | None]:
        labels = list(labels)
        out: dict[int, str | None] = {}
        conn = self._reader()
        for i in range(0, len(labels), _CHUNK):
            chunk = labels[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            out.update(conn.execute(f"SELECT label, payload FROM points WHERE label IN ({marks})", chunk))
        return out

    def payloads_between(self, lo: int, hi: int) -> list[tuple[int, str | None]]:
        """(label, payload JSON) of every point whose label is in [lo, hi], by label: one range scan of the label
        index (the order costs nothing: the index is walked in it)."""
        sql = "SELECT label, payload FROM points WHERE label BETWEEN ? AND ? ORDER BY label"
        return self._reader().execute(sql, (lo, hi)).fetchall()

    def disk_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                total += os.stat(p).st_size
        return total

    def page_usage(self) -> tuple[int, int]:
        """(bytes in used pages, bytes in free pages) of the database file, WAL not included."""
        conn = self._reader()
        size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * size, free * size

    def checkpoint(self) -> None:
        self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._writer.close()


def _sql_datetime(v: object) -> float | None:
    """SQLite's view of a payload datetime: epoch seconds of a string that parses, else NULL."""
    return parse_datetime(v) if isinstance(v, str) else None
