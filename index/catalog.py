"""The catalog: every collection under one data directory.

Layout: `<data_dir>/collections/<name>/` holds `collection.json` (the config, written first and
atomically), `points.sqlite` (store of record), `vectors.f32` and `index/` (derived). A deleted
collection is first renamed into `<data_dir>/trash/`, so a crash mid-delete cannot leave a
half-deleted collection that loads.

A collection whose config has `shards > 1` or `replicas > 1` is held by the `cluster` given to the
catalog (`cluster.sharded.RayCluster`, when the server runs with a Ray address); `index/` never imports
it. Without a cluster such a collection is refused at creation (422) and left out at startup.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Protocol

from index import stamp
from index.aliases import AliasAction, Aliases
from index.collection import Collection
from index.compaction import recover_all
from index.contract import AnyCollection, CollectionOptions
from index.errors import CollectionExists, CollectionNotFound, InvalidConfig, InvalidFilter, InvalidRequest
from index.filters import split_key
from index.fsutil import fsync_dir, makedirs
from index.multivector import check_multivector
from nestor_client.models import CollectionConfig

__all__ = ["Catalog", "ClusterBackend"]

log = logging.getLogger("nestor.catalog")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ClusterBackend(Protocol):
    """Makes the collections that have shards or replicas; they implement the same `AnyCollection` contract."""

    def create(
        self, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions
    ) -> AnyCollection: ...

    def open(
        self, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions
    ) -> AnyCollection: ...


def check_config(config: CollectionConfig) -> CollectionConfig:
    """Reject settings that parse but make no sense (InvalidConfig); returns the config as it is stored."""
    for key in config.payload_schema:
        try:
            split_key(key)
        except InvalidFilter as exc:
            raise InvalidConfig(f"payload_schema: {exc}") from None
    if config.vectors is None:
        vcfg = check_multivector(config.vector_fields()[""], "index" in config.model_fields_set)
        update = {k: getattr(vcfg, k) for k in ("index", "multivector") if getattr(vcfg, k) != getattr(config, k)}
        return config.model_copy(update=update) if update else config
    fields = {name: check_multivector(vcfg, "index" in vcfg.model_fields_set) for name, vcfg in config.vectors.items()}
    return config if fields == config.vectors else config.model_copy(update={"vectors": fields})


def _distributed(config: CollectionConfig) -> bool:
    return config.shards > 1 or config.replicas > 1


class Catalog:
    def __init__(
        self, data_dir: Path, options: CollectionOptions | None = None, cluster: ClusterBackend | None = None
    ) -> None:
        self.data_dir = data_dir
        self.options = options or CollectionOptions()
        self.cluster = cluster
        self._root = data_dir / "collections"
        self._trash = data_dir / "trash"
        self._lock = threading.Lock()
        self._collections: dict[str, AnyCollection] = {}
        makedirs(self._root)  # durable: a collection created in it is acknowledged only once its path is
        shutil.rmtree(self._trash, ignore_errors=True)
        self._trash.mkdir(exist_ok=True)
        self.aliases = Aliases(data_dir / "aliases.json")

    def open_all(self) -> None:
        recover_all(self._root)  # a compaction's swap that a crash interrupted (index/compaction.py)
        for d in sorted(self._root.iterdir()):
            if not d.is_dir() or d.name.startswith("."):  # not a collection name: nothing of ours to open
                continue
            if not (d / "collection.json").exists():  # a create that crashed before its config landed
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                config = CollectionConfig.model_validate_json((d / "collection.json").read_bytes())
                if _distributed(config):
                    if self.cluster is None:
                        log.error("collection %s is sharded: start the server with a Ray address to open it", d.name)
                        continue
                    self._collections[d.name] = self.cluster.open(d.name, d, config, self.options)
                else:
                    self._collections[d.name] = Collection.open(d.name, d, self.options)
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
            if self.aliases.resolve(name) is not None:
                raise CollectionExists(f"{name!r} is an alias; delete the alias first or choose another name")
            existing = self._collections.get(name)
            if existing is not None:
                # Payload indexes come and go with PUT /index: a config that names none matches any.
                have = (
                    existing.config
                    if config.payload_schema
                    else existing.config.model_copy(update={"payload_schema": {}})
                )
                if have == config:
                    return existing, False
                raise CollectionExists(f"collection {name!r} exists with a different config")
            if (self._root / name).exists():
                raise CollectionExists(
                    f"collection {name!r} exists on disk but could not be opened; see the server log"
                )
            if _distributed(config):
                if self.cluster is None:
                    raise InvalidConfig(
                        f"shards={config.shards}, replicas={config.replicas} needs a Ray cluster: start the server "
                        "with --ray-address (NESTOR_RAY_ADDRESS), or leave shards and replicas at 1"
                    )
                coll = self.cluster.create(name, self._root / name, config, self.options)
            else:
                coll = Collection.create(name, self._root / name, config, self.options)
            self._collections[name] = coll
        stamp.bump()  # a follower looks for the new directory again (index/stamp.py)
        return coll, True

    def get(self, name: str) -> AnyCollection:
        """The collection `name`, or the one the alias `name` points to."""
        coll = self._collections.get(name)
        if coll is None:
            target = self.aliases.resolve(name)
            coll = self._collections.get(target) if target is not None else None
            if coll is None:
                raise CollectionNotFound(name)
        return coll

    def update_aliases(self, actions: list[AliasAction]) -> None:
        """Create, delete or rename aliases: all of `actions` or none (aliases.py)."""
        with self._lock:
            self.aliases.apply(actions, self._collections.__contains__, self.check_name)

    def names(self) -> list[str]:
        return sorted(self._collections)

    def list(self) -> list[tuple[str, int]]:
        return [(n, self._collections[n].count) for n in self.names()]

    def delete(self, name: str) -> None:
        with self._lock:
            coll = self._collections.pop(name, None)
            if coll is None:
                raise CollectionNotFound(name)
            self.aliases.drop_collection(name)
        coll.close()
        doomed = self._trash / f"{name}-{uuid.uuid4().hex}"
        (self._root / name).rename(doomed)
        fsync_dir(self._root)
        stamp.bump()
        shutil.rmtree(doomed, ignore_errors=True)

    def install(self, name: str, staged: Path) -> AnyCollection:
        """Make the collection directory `staged` (an unpacked snapshot) collection `name`, replacing any.

        The old directory is parked in the trash until the new one opens, and put back if it does not.
        Requests still running on a replaced collection fail; new ones see the restored one.
        """
        self.check_name(name)
        target = self._root / name
        with self._lock:
            if self.aliases.resolve(name) is not None:
                raise CollectionExists(f"{name!r} is an alias; delete the alias first or restore under another name")
            old = self._collections.pop(name, None)
            if old is not None:
                old.close()
            parked = None
            if target.exists():
                parked = self._trash / f"{name}-{uuid.uuid4().hex}"
                target.rename(parked)
            staged.rename(target)
            fsync_dir(self._root)
            stamp.bump()
            try:
                coll = Collection.open(name, target, self.options)
            except BaseException:
                target.rename(staged)
                if parked is not None:
                    parked.rename(target)
                    if old is not None:
                        self._collections[name] = Collection.open(name, target, self.options)
                fsync_dir(self._root)
                raise
            self._collections[name] = coll
        if parked is not None:
            shutil.rmtree(parked, ignore_errors=True)
        return coll

    def close(self) -> None:
        with self._lock:
            colls = list(self._collections.values())
            self._collections.clear()
        for c in colls:
            c.close()
