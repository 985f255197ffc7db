"""Collection aliases: other names for a collection, switched atomically (blue-green reindexing).

An application reads and writes through an alias; an operator builds a new collection beside the old one,
then moves the alias in one request, so no query ever sees a half-built collection. The map lives in
`<data_dir>/aliases.json`, rewritten whole and atomically on each change, so a crash leaves either the old
map or the new one. A batch of actions applies all or nothing, as Qdrant's `POST /collections/aliases` does.
An alias never shadows a collection: the catalog refuses an alias named like a collection and a
collection named like an alias, and deleting a collection drops its aliases.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from index.errors import CollectionNotFound, InvalidRequest, NestorError
from index.fsutil import atomic_write_bytes

__all__ = ["AliasAction", "AliasNotFound", "Aliases"]


class AliasNotFound(NestorError):
    status = 404
    type = "alias_not_found"


@dataclass(frozen=True, slots=True)
class AliasAction:
    """One change: `create` (alias -> collection; an existing alias is moved), `delete` (alias), or
    `rename` (alias -> new_name)."""

    kind: str
    alias: str
    collection: str | None = None
    new_name: str | None = None


class Aliases:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._map: dict[str, str] = self._load()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self._path.read_bytes())
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ValueError(f"{self._path}: not a JSON object of alias -> collection names")
        return data

    def resolve(self, name: str) -> str | None:
        """The collection `name` is an alias of, or None."""
        return self._map.get(name)

    def items(self, collection: str | None = None) -> list[tuple[str, str]]:
        """(alias, collection) pairs, sorted by alias; only `collection`'s when given."""
        return sorted((a, c) for a, c in self._map.items() if collection is None or c == collection)

    def apply(
        self, actions: Sequence[AliasAction], is_collection: Callable[[str], bool], check_name: Callable[[str], None]
    ) -> None:
        """Apply every action or none; the new map is durable when this returns."""
        with self._lock:
            new = dict(self._map)
            for act in actions:
                _apply_one(new, act, is_collection, check_name)
            if new != self._map:
                atomic_write_bytes(self._path, json.dumps(new, sort_keys=True).encode())
                self._map = new

    def drop_collection(self, collection: str) -> None:
        """Forget every alias of a deleted collection."""
        with self._lock:
            new = {a: c for a, c in self._map.items() if c != collection}
            if new != self._map:
                atomic_write_bytes(self._path, json.dumps(new, sort_keys=True).encode())
                self._map = new


def _apply_one(
    new: dict[str, str], act: AliasAction, is_collection: Callable[[str], bool], check_name: Callable[[str], None]
) -> None:
    if act.kind == "create":
        if act.collection is None:
            raise InvalidRequest(f"create_alias {act.alias!r}: collection_name is required")
        _check_free(act.alias, is_collection, check_name)
        if not is_collection(act.collection):
            raise CollectionNotFound(act.collection)
        new[act.alias] = act.collection
    elif act.kind == "delete":
        if new.pop(act.alias, None) is None:
            raise AliasNotFound(f"alias {act.alias!r} does not exist")
    elif act.kind == "rename":
        if act.new_name is None:
            raise InvalidRequest(f"rename_alias {act.alias!r}: new_alias_name is required")
        target = new.pop(act.alias, None)
        if target is None:
            raise AliasNotFound(f"alias {act.alias!r} does not exist")
        _check_free(act.new_name, is_collection, check_name)
        new[act.new_name] = target
    else:
        raise InvalidRequest(f"unknown alias action {act.kind!r}: use create, delete or rename")


def _check_free(alias: str, is_collection: Callable[[str], bool], check_name: Callable[[str], None]) -> None:
    check_name(alias)
    if is_collection(alias):
        raise InvalidRequest(f"alias {alias!r}: a collection has that name")
