"""The changes of Qdrant's payload and vector updates, as `mutate.Change`s."""

from __future__ import annotations

from typing import Any

from index.contract import PointIdT
from nestor_client.models import CollectionConfig
from server.qdrant.mutate import Change
from server.qdrant.pipeline import sparse_vector
from server.qdrant.points import one_vector
from server.qdrant.wire import QdrantError

__all__ = ["clear_payload", "delete_payload", "delete_vectors", "overwrite_payload", "set_payload", "update_vectors"]


def set_payload(values: dict[str, Any], key: str | None) -> Change:
    """Merge `values` into the payload, or into the object at the dotted path `key` (made if absent)."""

    def change(_: PointIdT, payload: dict[str, Any], __: dict[str, Any]) -> None:
        node = payload
        for part in key.split(".") if key else ():
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node.update(values)

    return change


def overwrite_payload(values: dict[str, Any]) -> Change:
    def change(_: PointIdT, payload: dict[str, Any], __: dict[str, Any]) -> None:
        payload.clear()
        payload.update(values)

    return change


def delete_payload(keys: list[str]) -> Change:
    """Remove each key; a dotted key removes inside objects."""

    def change(_: PointIdT, payload: dict[str, Any], __: dict[str, Any]) -> None:
        for key in keys:
            *path, last = key.split(".")
            node: Any = payload
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(last, None)

    return change


def clear_payload() -> Change:
    return overwrite_payload({})


def update_vectors(new: dict[PointIdT, Any], config: CollectionConfig) -> Change:
    """Replace the given vectors of each point (`new`: id -> a vector, or {name: vector}); others stay."""
    fields, sparse = config.vector_fields(), config.sparse_fields()

    def change(pid: PointIdT, _: dict[str, Any], vectors: dict[str, Any]) -> None:
        raw = new[pid]
        given = raw if isinstance(raw, dict) and "indices" not in raw else {"": raw}
        for name, v in given.items():
            if name in sparse:
                vectors[name] = sparse_vector(v, f"point {pid!r}, sparse vector {name!r}")
                continue
            if name not in fields:
                raise QdrantError(f"Wrong input: Not existing vector name error: {name}")
            vectors[name] = one_vector(v, fields[name], f"point {pid!r}" + (f", vector {name!r}" if name else ""))

    return change


def delete_vectors(names: list[str], config: CollectionConfig) -> Change:
    fields = {**config.vector_fields(), **config.sparse_fields()}
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise QdrantError(f"Wrong input: Not existing vector name error: {unknown[0]}")

    def change(_: PointIdT, __: dict[str, Any], vectors: dict[str, Any]) -> None:
        for n in names:
            vectors[n] = None

    return change
