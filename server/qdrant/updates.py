"""Every Qdrant write as one engine operation on a collection, shared by its own route and by
`POST .../points/batch` (`OPERATIONS`). Each runs in a worker thread and returns the engine's `WriteResult`.

A batch's operations are all parsed (their shapes) before the first is applied; each is then atomic on
its own, and a failing one stops the batch (Qdrant's batches are not transactions either)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from index.contract import AnyCollection, WriteResult
from index.errors import PayloadTooLarge
from nestor_client.models import Filter, HasIdCondition
from server.qdrant import payload_ops
from server.qdrant.filters import to_filter
from server.qdrant.ids import point_ids
from server.qdrant.models import (
    DeletePayload,
    DeleteVectors,
    PointsSelector,
    SetPayload,
    UpdateVectors,
    UpsertPoints,
)
from server.qdrant.mutate import check_payloads, rewrite, selected_ids
from server.qdrant.points import batch_vectors, point_vectors
from server.qdrant.wire import QdrantError
from server.scopes import and_filter
from server.settings import Settings

__all__ = ["OPERATIONS", "Operation", "apply"]


def _check_count(n: int, settings: Settings) -> None:
    if n > settings.max_batch_points:
        raise PayloadTooLarge(f"{n} points in one request exceeds max_batch_points {settings.max_batch_points}")


def upsert(coll: AnyCollection, body: UpsertPoints, settings: Settings) -> WriteResult:
    if body.update_filter is not None:
        raise QdrantError("Bad request: update_filter (conditional upsert) is not supported by Nestor")
    if body.points is not None:
        ids = point_ids([p.id for p in body.points])
        _check_count(len(ids), settings)
        vectors = point_vectors(ids, [p.vector for p in body.points], coll.config)
        payloads = [p.payload for p in body.points]
    elif body.batch is not None:
        ids = point_ids(body.batch.ids)
        _check_count(len(ids), settings)
        vectors = batch_vectors(ids, body.batch.vectors, coll.config)
        payloads = body.batch.payloads or [None] * len(ids)  # type: ignore[assignment]
        if len(payloads) != len(ids):
            raise QdrantError("Wrong input: batch.payloads must have one entry per id")
    else:
        raise QdrantError("Format error in JSON body: give points or batch")
    check_payloads(payloads, settings.max_payload_bytes)
    return coll.upsert(ids, vectors, payloads)


def _ids(coll: AnyCollection, sel: PointsSelector, settings: Settings) -> list[Any]:
    ids = selected_ids(coll, sel.points, to_filter(sel.filter, settings), settings.max_batch_points)
    _check_count(len(ids), settings)
    return ids


def delete(coll: AnyCollection, body: PointsSelector, settings: Settings, scope: Filter | None = None) -> WriteResult:
    """By ids or by filter; under a key scoped by a filter, only points matching it (one engine call)."""
    if body.points is not None:
        ids = point_ids(body.points)
        _check_count(len(ids), settings)
        if scope is None:
            return coll.delete(ids)
        if not ids:
            return WriteResult(0, coll.seq)
        return coll.delete_where(Filter(must=[HasIdCondition(has_id=ids), scope]))
    flt = and_filter(scope, to_filter(body.filter, settings))
    if body.filter is None or flt is None:
        raise QdrantError("Format error in JSON body: give points (a list of ids) or a filter")
    return coll.delete_where(flt)


def set_payload(coll: AnyCollection, body: SetPayload, settings: Settings) -> WriteResult:
    return rewrite(
        coll, _ids(coll, body, settings), payload_ops.set_payload(body.payload, body.key), settings.max_payload_bytes
    )


def overwrite_payload(coll: AnyCollection, body: SetPayload, settings: Settings) -> WriteResult:
    if body.key is not None:
        return set_payload(coll, body, settings)  # Qdrant: with a key, overwrite merges under it
    return rewrite(
        coll, _ids(coll, body, settings), payload_ops.overwrite_payload(body.payload), settings.max_payload_bytes
    )


def delete_payload(coll: AnyCollection, body: DeletePayload, settings: Settings) -> WriteResult:
    return rewrite(coll, _ids(coll, body, settings), payload_ops.delete_payload(body.keys), settings.max_payload_bytes)


def clear_payload(coll: AnyCollection, body: PointsSelector, settings: Settings) -> WriteResult:
    return rewrite(coll, _ids(coll, body, settings), payload_ops.clear_payload(), settings.max_payload_bytes)


def update_vectors(coll: AnyCollection, body: UpdateVectors, settings: Settings) -> WriteResult:
    if body.update_filter is not None:
        raise QdrantError("Bad request: update_filter (conditional update) is not supported by Nestor")
    new = {pid: p.vector for pid, p in zip(point_ids([p.id for p in body.points]), body.points, strict=True)}
    _check_count(len(new), settings)
    return rewrite(coll, list(new), payload_ops.update_vectors(new, coll.config), settings.max_payload_bytes)


def delete_vectors(coll: AnyCollection, body: DeleteVectors, settings: Settings) -> WriteResult:
    change = payload_ops.delete_vectors(body.vector, coll.config)
    return rewrite(coll, _ids(coll, body, settings), change, settings.max_payload_bytes)


Operation = tuple[type[BaseModel], Callable[[AnyCollection, Any, Settings], WriteResult]]

# The operations of `POST .../points/batch`: `{"upsert": {...}}`, `{"delete": {...}}`, ...
OPERATIONS: dict[str, Operation] = {
    "upsert": (UpsertPoints, upsert),
    "delete": (PointsSelector, delete),
    "set_payload": (SetPayload, set_payload),
    "overwrite_payload": (SetPayload, overwrite_payload),
    "delete_payload": (DeletePayload, delete_payload),
    "clear_payload": (PointsSelector, clear_payload),
    "update_vectors": (UpdateVectors, update_vectors),
    "delete_vectors": (DeleteVectors, delete_vectors),
}


def parse(operations: list[dict[str, Any]]) -> list[tuple[Callable[[AnyCollection, Any, Settings], WriteResult], Any]]:
    """Each operation's function and validated body, all before any is applied."""
    out = []
    for i, op in enumerate(operations):
        if len(op) != 1 or next(iter(op)) not in OPERATIONS:
            raise QdrantError(
                f"Format error in JSON body: operations[{i}] must be one of {sorted(OPERATIONS)} as {{name: body}}"
            )
        name, body = next(iter(op.items()))
        model, fn = OPERATIONS[name]
        out.append((fn, model.model_validate(body)))
    return out


def apply(coll: AnyCollection, operations: list[dict[str, Any]], settings: Settings) -> list[WriteResult]:
    return [fn(coll, body, settings) for fn, body in parse(operations)]
