"""The catalog: every collection under one data directory.

Layout: `<data_dir>/collections/<name>/` holds `collection.json` (the config, written first and
atomically), `points.sqlite` (store of record), `vectors.f32` and `index/` (derived). A deleted
collection is first renamed into `<data_dir>/trash/`, so a crash mid-delete cannot leave a
half-deleted collection that loads.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import uuid
from pathlib import Path

from index.collection import CollectionOptions
from index.errors import CollectionExists, CollectionNotFound, InvalidRequest
from index.fsutil import fsync_dir
from index.multivector import AnyCollection, check_config, create_collection, open_collection
from nestor_client.models import CollectionConfig

__all__ = ["Catalog"]

log = logging.getLogger("nestor.catalog")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class Catalog:
    def __init__(self, data_dir: Path, options: CollectionOptions | None = None) -> None:
        self.data_dir = data_dir
        self.options = options or CollectionOptions()
        self._root = data_dir / "collections"
        self._trash = data_dir / "trash"
        self._lock = threading.Lock()
        self._collections: dict[str, AnyCollection] = {}
        self._root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self._trash, ignore_errors=True)
        self._trash.mkdir(exist_ok=True)

    def open_all(self) -> None:
        for d in sorted(self._root.iterdir()):
            if not d.is_dir():
                continue
            if not (d / "collection.json").exists():  # a create that crashed before its config landed
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                self._collections[d.name] = open_collection(d.name, d, self.options)
            except Exception:
                log.exception("cannot open collection %s; leaving it out", d.name)

    @staticmethod
    def check_name(name: str) -> None:
        if not _NAME.match(name):
            raise InvalidRequest(
                f"invalid collection name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
                "starting with a letter or digit"
            )

    def create(self, name: str, config: CollectionConfig) -> tuple[AnyCollection, bool]:
        """Create, or return the existing collection when its config is identical."""
        self.check_name(name)
        config = check_config(config)
        with self._lock:
            existing = self._collections.get(name)
            if existing is not None:
                if existing.config == config:
                    return existing, False
                raise CollectionExists(f"collection {name!r} exists with a different config")
            if (self._root / name).exists():
                raise CollectionExists(
                    f"collection {name!r} exists on disk but could not be opened; see the server log"
                )
            coll = create_collection(name, self._root / name, config, self.options)
            self._collections[name] = coll
            return coll, True

    def get(self, name: str) -> AnyCollection:
        coll = self._collections.get(name)
        if coll is None:
            raise CollectionNotFound(name)
        return coll

    def names(self) -> list[str]:
        return sorted(self._collections)

    def list(self) -> list[tuple[str, int]]:
        return [(n, self._collections[n].count) for n in self.names()]

    def delete(self, name: str) -> None:
        with self._lock:
            coll = self._collections.pop(name, None)
            if coll is None:
                raise CollectionNotFound(name)
        coll.close()
        doomed = self._trash / f"{name}-{uuid.uuid4().hex}"
        (self._root / name).rename(doomed)
        fsync_dir(self._root)
        shutil.rmtree(doomed, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            colls = list(self._collections.values())
            self._collections.clear()
        for c in colls:
            c.close()
