"""A follower's read-only view of a data directory that another process (the primary) writes.

`nestor serve --processes N` (server/processes.py) runs one primary, which does every write as a
single process does, and N-1 followers that serve searches from the same files. A follower never
writes the directory: no recovery, no truncation of rows past the committed count (they are the
primary's write in progress: index/readonly.py), no index saves, no compaction.

It opens a collection as a restart does (the saved index, then the unindexed tail, indexed in its own
memory), from one SQLite read transaction, so the labels, the committed count and the payloads are one
state of the store. Before it serves a read, it compares the collection's stamp with the one it loaded:

- the committed write sequence (`meta.seq`), which the primary's commit bumps before it acknowledges;
- the inode of `points.sqlite` (a compaction's generation swap, a snapshot restore, delete and create);
- the inode of `collection.json` (rewritten atomically when a payload index comes or goes).

When they differ, the next read waits until the follower is current, so a write acknowledged by the
primary is visible to the next search on any follower. With the primary's write stamp (index/stamp.py),
a follower skips that check while the stamp has not moved since it last found the collection current.
When only the `seq` moved (the common case: writes and deletes), the follower catches up incrementally:
it applies the rows and deaths committed since its `seq`, read in one transaction (index/catchup.py), at
a cost that follows the write, not the collection.
Otherwise (a new store or config file, a deaths log that does not reach back, a bulk load) it loads the
collection again, which costs a restart's load time (docs/processes.md).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from index import catchup
from index.aliases import Aliases
from index.backends.base import I64
from index.catalog import Catalog
from index.collection import Collection
from index.contract import AnyCollection, CollectionOptions
from index.errors import CollectionNotFound, InvalidRequest
from index.readonly import set_read_only
from index.stamp import WriteStamp
from index.storage import PointStore
from nestor_client.models import CollectionConfig

__all__ = ["FollowerCatalog", "FollowerCollection", "ReadOnlyFollower"]

log = logging.getLogger("nestor.follow")
_NEVER = 1e8  # seconds (3 years; more overflows a lock timeout): a follower's indexer never saves
_CLOSE_DELAY = 30.0  # seconds a replaced collection stays open for the searches still running on it
_RELOAD_TRIES = 40  # x 50 ms: a compaction's swap renames the directory away for a moment

Stamp = tuple[int, int, int]  # (inode of collection.json, inode of points.sqlite, committed seq)


class ReadOnlyFollower(InvalidRequest):
    """A write reached a follower's engine: it must have gone to the primary (server/processes.py)."""


class SnapshotStore(PointStore):
    """The store, read through one read transaction until `release`: the labels, the committed count
    and the payload rows a collection opens from are then one state, whatever the primary commits."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._writer.execute("BEGIN")  # deferred: the snapshot is taken by the first read below
        self._pinned = True

    def _reader(self) -> sqlite3.Connection:
        return self._writer if self._pinned else super()._reader()

    def payload_rows(self, since_seq: int = -1) -> tuple[int, list[tuple[int, str | None]]]:
        if not self._pinned:
            return super().payload_rows(since_seq)
        row = self._writer.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        rows = self._writer.execute("SELECT label, payload FROM points WHERE seq > ?", (since_seq,)).fetchall()
        return (int(row[0]) if row else 0), rows

    def release(self) -> None:
        if self._pinned:
            self._pinned = False
            self._writer.execute("COMMIT")

    def checkpoint(self) -> None:  # the primary's job
        pass


class FollowerCollection(Collection):
    """A collection opened read-only: it searches, and refuses every write."""

    store_class = SnapshotStore

    def _open_state(self) -> None:
        self._retired: list[I64] = []  # labels a catch-up found dead, for the indexer to drop from the indexes
        self._retired_lock = threading.Lock()
        super()._open_state()
        assert isinstance(self.points, SnapshotStore)
        self.points.release()

    def retire(self, labels: I64) -> None:
        """Drop `labels` (dead: searches skip them already) from the indexes on the indexer's thread, which
        holds no graph lock between its steps, so the catch-up a search waits for does not wait for it."""
        if len(labels):
            with self._retired_lock:
                self._retired.append(labels)
            self.wake_indexer()

    def _derived_step(self) -> bool:
        with self._retired_lock:
            retired, self._retired = self._retired, []
        if retired:
            labels = np.concatenate(retired)
            for f in self.fields.values():
                f.remove_from_index(labels)
        return super()._derived_step()

    def upsert(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnlyFollower("this process is a read-only follower; writes go to the primary")

    delete = delete_where = upsert

    def close(self) -> None:
        """Stop the threads and close the files; nothing is saved (the primary owns the files)."""
        self.optimizer.stop()
        self._indexer.stop()
        self._tails.close()
        with self._write_lock:
            self.closed = True
            self._close_stores()


def follower_options(options: CollectionOptions) -> CollectionOptions:
    """The primary's options, without anything that writes: no index saves, no background compaction."""
    return replace(options, save_idle_seconds=_NEVER, save_max_seconds=_NEVER, optimizer_interval=0.0)


def _mapped(config: CollectionConfig) -> CollectionConfig:
    """`config` with every dense vector file memory-mapped (`on_disk`): a follower shares the page cache
    of the file instead of reading a copy into its RAM, which also makes a reload fast (measured at 20k x
    384: 0.28 s of a 0.67 s reload was reading vectors.f32). The price is in every search: the map has 4 KB
    pages where the RAM copy gets huge ones, and a graph walk's scattered reads miss the TLB more (12-20 %
    more CPU a search at 100k x 384), so it is the follower's choice (`FollowerCatalog.map_vectors`)."""
    if config.vectors is None:
        return config.model_copy(update={"on_disk": True})
    return config.model_copy(
        update={"vectors": {n: v.model_copy(update={"on_disk": True}) for n, v in config.vectors.items()}}
    )


def _ino(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return 0


class FollowerCatalog(Catalog):
    """The catalog of a follower: the collections on disk, each reloaded when its stamp moves."""

    def __init__(
        self,
        data_dir: Path,
        options: CollectionOptions | None = None,
        cluster: Any = None,
        stamp: WriteStamp | None = None,
    ) -> None:
        # Not Catalog.__init__: it creates directories and empties the trash, which are the primary's
        set_read_only()
        self.data_dir = data_dir
        self.options = follower_options(options or CollectionOptions())
        self.cluster = None  # sharded collections live in Ray, not in these files
        self._root = data_dir / "collections"
        self._trash = data_dir / "trash"
        self._lock = threading.Lock()  # held while a collection loads: one load at a time
        self._collections: dict[str, AnyCollection] = {}
        self._stamps: dict[str, Stamp] = {}
        self._seq_conns: dict[str, tuple[int, sqlite3.Connection]] = {}  # name -> (inode, connection)
        self.stamp = stamp  # the primary's write stamp; None: check the files before every read
        self._current_at: dict[str, int] = {}  # name -> the stamp's value when `name` was last found current
        self._alias_ino = _ino(data_dir / "aliases.json")
        self.aliases = Aliases(data_dir / "aliases.json")
        self.reloads = 0  # collections loaded whole (at first sight included)
        self.catch_ups = 0  # syncs done incrementally (index/catchup.py)
        self.catch_up_enabled = True  # False: every change loads the collection whole (NESTOR_FOLLOWER_CATCH_UP)
        # True: the vector files are mapped, shared with the primary's page cache; False: a copy in this
        # process's RAM, where big arrays get huge pages (NESTOR_FOLLOWER_VECTORS; the server's default is ram)
        self.map_vectors = True

    def open_all(self) -> None:
        if self._root.is_dir():
            for d in sorted(self._root.iterdir()):
                if d.is_dir() and not d.name.startswith("."):
                    self._reload(d.name)

    # -- staleness ----------------------------------------------------------------------------

    def _committed_seq(self, name: str, ino: int) -> int:
        held = self._seq_conns.get(name)
        if held is None or held[0] != ino:
            if held is not None:
                held[1].close()
            uri = (self._root / name / "points.sqlite").as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
            held = self._seq_conns[name] = (ino, conn)
        row = held[1].execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        return int(row[0]) if row else 0

    def _stamp(self, name: str) -> Stamp | None:
        """What the primary has committed for `name` now; None when there is no such collection."""
        d = self._root / name
        cfg, db = _ino(d / "collection.json"), _ino(d / "points.sqlite")
        if not cfg or not db:
            return None
        try:
            return cfg, db, self._committed_seq(name, db)
        except sqlite3.Error:  # replaced between the stat and the read: load it again
            return None

    def _target(self, name: str) -> str:
        """The collection a path's name means: itself, else the alias's target (aliases.json reread)."""
        ino = _ino(self.data_dir / "aliases.json")
        if ino != self._alias_ino:
            self._alias_ino = ino
            self.aliases = Aliases(self.data_dir / "aliases.json")
        if (self._root / name).is_dir():
            return name
        return self.aliases.resolve(name) or name

    def _written(self) -> int | None:
        return None if self.stamp is None else self.stamp.read()

    def stale(self, name: str) -> bool:
        """True when a read of `name` must wait for `sync`: the primary committed something since. Called
        on the event loop, so it never waits: while a load is under way, the answer is "go and wait" (True)."""
        written = self._written()  # read before the files: see index/stamp.py for why that order is safe
        if written is not None and self._current_at.get(name) == written:
            return False  # nothing changed since `name` was found current
        if not self._lock.acquire(blocking=False):
            return True
        try:
            target = self._target(name)
            stale = self._stamp(target) != self._stamps.get(target)
            if not stale and written is not None:
                self._current_at[name] = written
            return stale
        finally:
            self._lock.release()

    def sync(self, name: str) -> None:
        """Load `name` (or its alias's target) again if the primary changed it since it was loaded."""
        with self._lock:
            written = self._written()
            target = self._target(name)
            now, held = self._stamp(target), self._stamps.get(target)
            if now != held:
                caught_up = now is not None and held is not None and now[:2] == held[:2] and self._catch_up(target)
                if not caught_up:
                    self._reload(target)
            if written is not None and self._stamps.get(target) == now:  # current as of `written`
                self._current_at[name] = written

    def _catch_up(self, name: str) -> bool:
        """Bring the loaded `name` (same store and config files) up to the committed seq incrementally;
        False when it cannot (index/catchup.py), and the caller loads it whole."""
        coll = self._collections.get(name)
        conn = self._seq_conns.get(name)
        if not self.catch_up_enabled or not isinstance(coll, FollowerCollection) or conn is None:
            return False
        delta = catchup.read_delta(conn[1], coll.seq, coll.labels.n)
        if delta is None:
            return False
        try:
            coll.retire(catchup.apply(coll, delta))
        except Exception:  # a half-applied delta is not a state of the store: load it whole
            log.exception("follower: cannot catch up collection %s, loading it whole", name)
            return False
        cfg, db, _ = self._stamps[name]
        self._stamps[name] = (cfg, db, coll.seq)
        self.catch_ups += 1
        return True

    # -- loading ------------------------------------------------------------------------------

    def _reload(self, name: str) -> None:
        """Replace the loaded `name` by the state on disk (or drop it); the old one closes later."""
        old = self._collections.pop(name, None)
        self._stamps.pop(name, None)
        if old is not None:
            timer = threading.Timer(_CLOSE_DELAY, old.close)
            timer.daemon = True  # a follower that exits does not wait for it
            timer.start()
        d = self._root / name
        for attempt in range(_RELOAD_TRIES):
            last = attempt == _RELOAD_TRIES - 1
            if (d / "collection.json").exists() and (d / "points.sqlite").exists():
                ino_cfg, ino_db = _ino(d / "collection.json"), _ino(d / "points.sqlite")
                try:
                    config = CollectionConfig.model_validate_json((d / "collection.json").read_bytes())
                    if config.shards > 1 or config.replicas > 1:
                        return  # held by the cluster, through the primary
                    config = _mapped(config) if self.map_vectors else config
                    coll = FollowerCollection(name, d, config, self.options)
                except Exception:
                    if last:
                        log.exception("follower: cannot load collection %s", name)
                        return
                else:
                    self._collections[name] = coll
                    self._stamps[name] = (ino_cfg, ino_db, coll.seq)
                    self.reloads += 1
                    return
            elif not self._swapping(name):
                return  # deleted, or never created
            time.sleep(0.05)

    def _swapping(self, name: str) -> bool:
        """A compaction's staging or parked generation of `name` exists: its swap may be under way."""
        return any(p.name.startswith(f".{name}") for p in self._root.iterdir())

    def get(self, name: str) -> AnyCollection:
        try:
            return super().get(name)
        except CollectionNotFound:
            with self._lock:
                target = self._target(name)
                if target not in self._collections:
                    self._reload(target)
            return super().get(name)

    def close(self) -> None:
        super().close()
        for _, conn in self._seq_conns.values():
            conn.close()
        self._seq_conns.clear()

    # Writes never reach here: server/processes.py forwards them to the primary.
    def create(self, name: str, config: CollectionConfig) -> tuple[AnyCollection, bool]:
        raise ReadOnlyFollower("this process is a read-only follower; writes go to the primary")

    def delete(self, name: str) -> None:
        raise ReadOnlyFollower("this process is a read-only follower; writes go to the primary")
