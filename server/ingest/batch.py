"""One batch of an ingest job: validate its rows, embed its texts, and shape it for `Collection.upsert`.

Runs in the pipeline's worker threads. A bad row never fails its batch: it becomes a `(line, reason)`
error and the batch goes on without it. The checks mirror what `Collection.upsert` refuses for a whole
batch (id types, dimension, NaN or Inf, a zero vector under cosine, a payload that is not a JSON object),
so the upsert of the good rows cannot fail because of one bad row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from encoders import Encoder
from index.backends.base import F32
from server.embedding import embed
from server.ingest.sources import Chunk, Cursor, Rows
from server.ingest.sparse_rows import given_sparse, text_sparse

__all__ = ["Prepared", "Target", "prepare"]

PointIdT = int | str
_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Target:
    """What rows must fit: the collection's dimension and metric, and its encoder for text rows."""

    dim: int
    cosine: bool
    encoder: Encoder | None = None
    name: str | None = ""  # the default vector's name; None: a sparse-only collection (no dense vector)
    sparse: dict[str, Encoder] = field(default_factory=dict)  # sparse vectors a text fills too (bm25)


@dataclass(slots=True)
class Prepared:
    """A batch ready to commit: the good rows, and the bad ones as (1-based line, reason), in line order."""

    start: int
    n: int
    end: Cursor
    ids: list[PointIdT]
    vectors: F32 | dict[str, Any]  # the default vector's rows, or by name with the sparse ones of text rows
    payloads: list[dict[str, Any] | None] | None
    errors: list[tuple[int, str]]


def _id_error(pid: Any) -> str | None:
    if isinstance(pid, bool) or not isinstance(pid, int | str):
        return f"id must be an unsigned integer or a string, got {'null' if pid is None else type(pid).__name__}"
    if isinstance(pid, int) and not 0 <= pid <= _MAX_ID:
        return f"id {pid} is out of range (0 to 2^63-1)"
    if isinstance(pid, str) and not 1 <= len(pid) <= 512:
        return "a string id must have 1 to 512 characters"
    return None


def _payload_error(payload: Any) -> str | None:
    if payload is None:
        return None
    if not isinstance(payload, dict):
        return f"payload must be a JSON object, got {type(payload).__name__}"
    try:
        orjson.dumps(payload)
    except TypeError as exc:
        return f"payload is not JSON: {exc}"
    return None


def _vectors(rows: Rows, ok: list[int], dim: int, bad: dict[int, str]) -> tuple[list[int], F32]:
    """The float32 matrix of the `ok` rows' vectors; rows of the wrong shape go to `bad`."""
    raw = rows.vectors
    if isinstance(raw, np.ndarray):
        if raw.ndim != 2 or raw.shape[1] != dim:
            width = raw.shape[-1] if raw.ndim else 0
            bad.update((i, f"expected a vector of dimension {dim}, got {width}") for i in ok)
            return [], np.empty((0, dim), np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            return ok, np.asarray(raw[ok], dtype=np.float32)
    assert raw is not None
    keep: list[int] = []
    mat = np.empty((len(ok), dim), dtype=np.float32)
    for i in ok:
        value = raw[i]
        if not isinstance(value, list):
            bad[i] = f"vector must be a list of numbers, got {'null' if value is None else type(value).__name__}"
            continue
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # out-of-range floats become inf, refused below
                v = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            bad[i] = "vector must be a list of numbers"
            continue
        if v.shape != (dim,):
            bad[i] = f"expected a vector of dimension {dim}, got {len(value)}"
            continue
        mat[len(keep)] = v
        keep.append(i)
    return keep, mat[: len(keep)]


def _texts(rows: Rows, ok: list[int], encoder: Encoder, bad: dict[int, str]) -> tuple[list[int], F32]:
    texts = rows.texts
    assert texts is not None
    keep: list[int] = []
    for i in ok:
        if isinstance(texts[i], str):
            keep.append(i)
        else:
            bad[i] = f"text must be a string, got {'null' if texts[i] is None else type(texts[i]).__name__}"
    emb = embed(encoder, [texts[i] for i in keep])
    for j, why in emb.errors.items():
        bad[keep[j]] = f"cannot embed the text: {why}"
    good = emb.ok_rows()
    return [keep[j] for j in good.tolist()], emb.dense()[good]


def _text_rows(rows: Rows, ok: list[int], bad: dict[int, str]) -> list[int]:
    """The `ok` rows whose text is a string (for sparse encoders only: no dense encoder checks them)."""
    texts = rows.texts
    assert texts is not None
    for i in ok:
        if not isinstance(texts[i], str):
            bad[i] = f"text must be a string, got {'null' if texts[i] is None else type(texts[i]).__name__}"
    return [i for i in ok if i not in bad]


def prepare(chunk: Chunk, target: Target) -> Prepared:
    rows = chunk.decode()
    bad = dict(rows.errors)
    ok = [i for i in range(chunk.n) if i not in bad and i not in rows.skip]
    for i in ok:
        why = _id_error(rows.ids[i])
        if why is None and rows.payloads is not None:
            why = _payload_error(rows.payloads[i])
        if why is not None:
            bad[i] = why
    ok = [i for i in ok if i not in bad]
    given = given_sparse(rows.sparse, ok, bad) if rows.sparse else {}
    ok = [i for i in ok if i not in bad]
    if target.name is None:  # a sparse-only collection: no dense vector (an empty matrix keeps the rows lined up)
        ok = _text_rows(rows, ok, bad) if rows.texts is not None else ok
        mat = np.empty((len(ok), 0), np.float32)
    elif rows.texts is not None:
        if target.encoder is None:
            raise RuntimeError("text rows need the collection's encoder")
        ok, mat = _texts(rows, ok, target.encoder, bad)
    else:
        ok, mat = _vectors(rows, ok, target.dim, bad)
    # The same refusals as Collection.upsert, row by row instead of for the whole batch.
    with np.errstate(over="ignore", invalid="ignore"):
        sq = np.einsum("ij,ij->i", mat, mat) if len(mat) else np.empty(0, np.float32)
    invalid: npt.NDArray[np.bool_] = np.logical_not(np.isfinite(mat).all(axis=1))
    zero: npt.NDArray[np.bool_] = np.asarray(sq == 0) if target.cosine else np.zeros(len(mat), bool)
    if invalid.any() or zero.any():
        for j in np.flatnonzero(invalid | zero).tolist():
            bad[ok[j]] = "vector contains NaN or Inf" if invalid[j] else "vector is all zeros (no cosine direction)"
        mask = ~(invalid | zero)
        ok, mat = [i for i, m in zip(ok, mask.tolist(), strict=True) if m], mat[mask]
    # A later row with the same id overwrites an earlier one, as separate upserts would.
    ids: list[PointIdT] = [rows.ids[i] for i in ok]
    last = {pid: j for j, pid in enumerate(ids)}
    if len(last) < len(ids):
        keep = sorted(last.values())
        ok, ids, mat = [ok[j] for j in keep], [ids[j] for j in keep], mat[keep]
    payloads = [rows.payloads[i] for i in ok] if rows.payloads is not None else None
    errors = [(chunk.start + i + 1, why) for i, why in sorted(bad.items())]
    if not given and not (rows.texts is not None and target.sparse):
        return Prepared(chunk.start, chunk.n, chunk.end, ids, mat, payloads, errors)
    vectors: dict[str, Any] = {} if target.name is None else {target.name: mat}
    for name, by_row in given.items():
        vectors[name] = [by_row[i] for i in ok]
    if rows.texts is not None and target.sparse:  # a text fills every vector with an encoder, as an upsert's
        vectors.update(text_sparse(target.sparse, [rows.texts[i] for i in ok]))
    return Prepared(chunk.start, chunk.n, chunk.end, ids, vectors, payloads, errors)
