"""Readers for ingest sources: JSON Lines, Parquet, and a `.npy` matrix with optional id and payload files.

A source yields `Chunk`s of at most `size` rows from a `Cursor`, the resume point a job persists. The
reading itself stays cheap (bytes and arrays); `Chunk.decode` does the per-row work (JSON parsing, column
conversion) and runs in the pipeline's worker threads. Nothing holds more than one chunk of a file in
memory, and files are read with plain reads rather than memory maps, whose touched pages would count
against the process's resident memory.

Rows are numbered from 1 in the order of the file: a JSON Lines row is a line (blank lines included, so
the numbers match an editor's), a Parquet or `.npy` row is a row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from nestor_client.models import IngestFormat, IngestSource
from server.ingest.errors import InvalidSource
from server.ingest.npy_source import NpySource
from server.ingest.roots import IngestRoots
from server.ingest.rows import Chunk, Cursor, Fields, Rows, Source, count_lines

__all__ = ["Chunk", "Cursor", "Fields", "NpySource", "Rows", "Source", "count_lines", "infer_format", "open_source"]

_SUFFIXES = {
    ".jsonl": IngestFormat.jsonl,
    ".ndjson": IngestFormat.jsonl,
    ".json": IngestFormat.jsonl,
    ".parquet": IngestFormat.parquet,
    ".pq": IngestFormat.parquet,
    ".npy": IngestFormat.npy,
}


def infer_format(spec: IngestSource) -> IngestFormat:
    if spec.format is not None:
        return spec.format
    fmt = _SUFFIXES.get(Path(spec.path).suffix.lower())
    if fmt is None:
        raise InvalidSource(
            f'cannot tell the format of {spec.path!r} from its extension; give "format": "jsonl", "parquet" or "npy"'
        )
    return fmt


def open_source(spec: IngestSource, fields: Fields, roots: IngestRoots) -> Source:
    """The source `spec` names, every path confined to `roots` (else 403) and resolved."""
    fmt = infer_format(spec)
    path = roots.confine(spec.path, "source")
    if fmt is not IngestFormat.npy and (spec.ids_path or spec.payload_path):
        raise InvalidSource("ids_path and payload_path go with a .npy source; JSON Lines and Parquet rows carry both")
    if fmt is IngestFormat.jsonl:
        return JsonlSource(path, fields)
    if fmt is IngestFormat.parquet:
        return ParquetSource(path, fields)
    if fields.text is not None:
        raise InvalidSource("a .npy source holds vectors, not text")
    ids = roots.confine(spec.ids_path, "ids_path") if spec.ids_path else None
    payloads = roots.confine(spec.payload_path, "payload_path") if spec.payload_path else None
    return NpySource(path, ids, payloads)


def _split(obj: dict[str, Any], fields: Fields, row: int) -> tuple[Any, Any, Any]:
    """(id, text-or-vector, payload) of one decoded object; KeyError names a missing field."""
    pid = row if fields.id is None else obj[fields.id]
    value = None
    if fields.text is not None or fields.vector is not None:
        value = obj[fields.text] if fields.text is not None else obj[fields.vector]  # type: ignore[index]
    if fields.payload is not None:
        payload = {k: obj[k] for k in fields.payload if k in obj}
    else:
        skip = fields.vector_keys()
        payload = {k: v for k, v in obj.items() if k != fields.id and k not in skip}
    return pid, value, payload


# -- JSON Lines ------------------------------------------------------------------------------------


@dataclass(slots=True)
class JsonlChunk:
    start: int
    n: int
    end: Cursor
    lines: list[bytes]
    fields: Fields

    def decode(self) -> Rows:
        f = self.fields
        rows = Rows(ids=[None] * self.n, payloads=[None] * self.n)
        values: list[Any] = [None] * self.n
        for i, line in enumerate(self.lines):
            if not line.strip():
                rows.skip.add(i)
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                rows.errors[i] = f"invalid JSON: {exc}"
                continue
            if not isinstance(obj, dict):
                rows.errors[i] = f"expected a JSON object, got {type(obj).__name__}"
                continue
            try:
                rows.ids[i], values[i], rows.payloads[i] = _split(obj, f, self.start + i)  # type: ignore[index]
            except KeyError as exc:
                rows.errors[i] = f"missing field {exc.args[0]!r}"
                continue
            for name, key in f.sparse:  # a row without the field has no such vector
                rows.sparse.setdefault(name, [None] * self.n)[i] = obj.get(key)
        if f.text is not None:
            rows.texts = values
        elif f.vector is not None:
            rows.vectors = values
        return rows


class JsonlSource:
    def __init__(self, path: Path, fields: Fields) -> None:
        self.path = path
        self.fields = fields

    def count(self) -> int:
        return count_lines(self.path)

    def check(self) -> None:
        return None

    def chunks(self, cursor: Cursor, size: int) -> Iterator[Chunk]:
        row, pos = cursor.row, cursor.byte
        with open(self.path, "rb") as fh:
            fh.seek(pos)
            while lines := list(islice(fh, size)):
                pos += sum(map(len, lines))
                yield JsonlChunk(row, len(lines), Cursor(row + len(lines), pos), lines, self.fields)
                row += len(lines)


# -- Parquet ---------------------------------------------------------------------------------------


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise InvalidSource("Parquet sources need pyarrow: pip install pyarrow") from None
    return pq


@dataclass(slots=True)
class ParquetChunk:
    start: int
    n: int
    end: Cursor
    batch: Any  # pyarrow.RecordBatch
    fields: Fields

    def decode(self) -> Rows:
        f, batch = self.fields, self.batch
        names = batch.schema.names
        ids = list(range(self.start, self.start + self.n)) if f.id is None else batch.column(f.id).to_pylist()
        rows = Rows(ids=ids)
        if f.text is not None:
            rows.texts = batch.column(f.text).to_pylist()
        elif f.vector is not None:
            rows.vectors = _vector_column(batch.column(f.vector))
        for name, key in f.sparse:  # a struct column of indices and values (null: none)
            rows.sparse[name] = batch.column(key).to_pylist() if key in names else [None] * self.n
        skip = {f.id, *f.vector_keys()}
        keep = list(f.payload) if f.payload is not None else [c for c in names if c not in skip]
        rows.payloads = batch.select(keep).to_pylist() if keep else [{} for _ in range(self.n)]
        return rows


def _vector_column(col: Any) -> npt.NDArray[Any] | list[Any]:
    """A list column as one float matrix when every row has the same length and no nulls; else per-row lists."""
    import pyarrow as pa

    if col.null_count == 0 and (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        values = col.flatten()
        if len(col) and values.null_count == 0 and len(values) % len(col) == 0:
            width = len(values) // len(col)
            offsets = None if pa.types.is_fixed_size_list(col.type) else col.offsets.to_numpy()
            if offsets is None or (np.diff(offsets) == width).all():
                try:
                    flat = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32)
                    return flat.reshape(len(col), width)
                except (pa.ArrowInvalid, TypeError, ValueError):
                    pass
    out: list[Any] = col.to_pylist()
    return out


class ParquetSource:
    def __init__(self, path: Path, fields: Fields) -> None:
        self.path = path
        self.fields = fields
        try:
            self._file = _pyarrow().ParquetFile(path)
        except Exception as exc:
            raise InvalidSource(f"{path}: not a readable Parquet file ({exc})") from None

    def count(self) -> int:
        return int(self._file.metadata.num_rows)

    def check(self) -> None:
        names = set(self._file.schema_arrow.names)
        f = self.fields
        wanted = [x for x in (f.id, f.text, f.vector, *(k for _, k in f.sparse)) if x is not None]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise InvalidSource(f"{self.path}: no column {missing[0]!r} (columns: {', '.join(sorted(names))})")

    def _columns(self) -> list[str] | None:
        f = self.fields
        if f.payload is None:
            return None
        names = set(self._file.schema_arrow.names)
        cols = [
            c for c in (f.id, f.text, f.vector, *(k for _, k in f.sparse), *f.payload) if c is not None and c in names
        ]
        return list(dict.fromkeys(cols))

    def chunks(self, cursor: Cursor, size: int) -> Iterator[Chunk]:
        meta = self._file.metadata
        group, first = 0, 0
        while group < meta.num_row_groups and first + meta.row_group(group).num_rows <= cursor.row:
            first += meta.row_group(group).num_rows
            group += 1
        skip = cursor.row - first
        row = cursor.row
        groups = list(range(group, meta.num_row_groups))
        if not groups:
            return
        for batch in self._file.iter_batches(batch_size=size, row_groups=groups, columns=self._columns()):
            if skip:
                cut = min(skip, batch.num_rows)
                batch, skip = batch.slice(cut), skip - cut
            if batch.num_rows:
                yield ParquetChunk(row, batch.num_rows, Cursor(row + batch.num_rows), batch, self.fields)
                row += batch.num_rows
