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
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson

from nestor_client.models import IngestFormat, IngestSource
from server.ingest.errors import InvalidSource
from server.ingest.roots import IngestRoots

__all__ = ["Chunk", "Cursor", "Fields", "Rows", "Source", "infer_format", "open_source"]

_SUFFIXES = {
    ".jsonl": IngestFormat.jsonl,
    ".ndjson": IngestFormat.jsonl,
    ".json": IngestFormat.jsonl,
    ".parquet": IngestFormat.parquet,
    ".pq": IngestFormat.parquet,
    ".npy": IngestFormat.npy,
}
_COUNT_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a source resumes: rows consumed, and byte offsets for the line-oriented files."""

    row: int = 0
    byte: int = 0  # in a JSON Lines source
    payload_byte: int = 0  # in the payload file of a .npy source


@dataclass(frozen=True, slots=True)
class Fields:
    """Which field holds what. `id` None numbers rows from 0; exactly one of `text` and `vector` is set."""

    id: str | None
    text: str | None
    vector: str | None
    payload: tuple[str, ...] | None  # None: every other field


@dataclass(slots=True)
class Rows:
    """One chunk after decoding: raw per-row values, still to be validated. `errors` and `skip` hold row
    offsets within the chunk: rows that could not be read, and blank lines."""

    ids: list[Any]
    texts: list[Any] | None = None
    vectors: npt.NDArray[Any] | list[Any] | None = None
    payloads: list[Any] | None = None
    errors: dict[int, str] = field(default_factory=dict)
    skip: set[int] = field(default_factory=set)


class Chunk(Protocol):
    start: int  # 0-based index of the first row
    n: int  # rows in the chunk
    end: Cursor  # the cursor after the chunk

    def decode(self) -> Rows: ...


class Source(Protocol):
    def count(self) -> int:
        """Total rows (lines, for JSON Lines)."""
        ...

    def check(self) -> None:
        """Fail early, with a clear message, on what would fail every row (before a job is accepted)."""
        ...

    def chunks(self, cursor: Cursor, size: int) -> Iterator[Chunk]: ...


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


def count_lines(path: Path) -> int:
    """Lines in a file, counting a last line without a newline."""
    n = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(_COUNT_BLOCK):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def _split(obj: dict[str, Any], fields: Fields, row: int) -> tuple[Any, Any, Any]:
    """(id, text-or-vector, payload) of one decoded object; KeyError names a missing field."""
    pid = row if fields.id is None else obj[fields.id]
    value = obj[fields.text] if fields.text is not None else obj[fields.vector]  # type: ignore[index]
    if fields.payload is not None:
        payload = {k: obj[k] for k in fields.payload if k in obj}
    else:
        payload = {k: v for k, v in obj.items() if k != fields.id and k != fields.vector}
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
        if f.text is not None:
            rows.texts = values
        else:
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
        else:
            rows.vectors = _vector_column(batch.column(f.vector))
        keep = list(f.payload) if f.payload is not None else [c for c in names if c not in (f.id, f.vector)]
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
        wanted = [x for x in (f.id, f.text, f.vector) if x is not None]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise InvalidSource(f"{self.path}: no column {missing[0]!r} (columns: {', '.join(sorted(names))})")

    def _columns(self) -> list[str] | None:
        f = self.fields
        if f.payload is None:
            return None
        names = set(self._file.schema_arrow.names)
        cols = [c for c in (f.id, f.text, f.vector, *f.payload) if c is not None and c in names]
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


# -- .npy ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    offset: int


def _npy_header(path: Path, what: str) -> _NpyHeader:
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
    except (ValueError, OSError) as exc:
        raise InvalidSource(f"{what} {path}: not a .npy file ({exc})") from None
    if fortran and len(shape) > 1:
        raise InvalidSource(f"{what} {path}: Fortran-ordered arrays are not supported; save it C-ordered")
    if dtype.hasobject:
        raise InvalidSource(f"{what} {path}: object arrays need pickle, which Nestor never loads")
    return _NpyHeader(tuple(shape), dtype, offset)


def _read_rows(path: Path, header: _NpyHeader, start: int, n: int) -> npt.NDArray[Any]:
    per_row = int(np.prod(header.shape[1:], dtype=np.int64)) if len(header.shape) > 1 else 1
    with open(path, "rb") as fh:
        fh.seek(header.offset + start * per_row * header.dtype.itemsize)
        flat = np.fromfile(fh, dtype=header.dtype, count=n * per_row)
    return flat.reshape((n, *header.shape[1:]))


@dataclass(slots=True)
class NpyChunk:
    start: int
    n: int
    end: Cursor
    vectors: npt.NDArray[Any]
    ids: list[Any]
    payload_lines: list[bytes] | None

    def decode(self) -> Rows:
        rows = Rows(ids=self.ids, vectors=self.vectors)
        if self.payload_lines is not None:
            rows.payloads = [None] * self.n
            for i, line in enumerate(self.payload_lines):
                if not line.strip() or line.strip() == b"null":
                    continue
                try:
                    rows.payloads[i] = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    rows.errors[i] = f"payload_path line {self.start + i + 1}: invalid JSON: {exc}"
        return rows


class NpySource:
    def __init__(self, path: Path, ids: Path | None, payloads: Path | None) -> None:
        self.path = path
        self.header = _npy_header(path, "source")
        if len(self.header.shape) != 2 or self.header.dtype.kind not in "fiu":
            raise InvalidSource(
                f"source {path}: expected a 2-D numeric matrix (rows x dim), got shape {self.header.shape} "
                f"of {self.header.dtype}"
            )
        self.ids_path = ids
        self.ids_header = _npy_header(ids, "ids_path") if ids is not None else None
        self.payload_path = payloads

    @property
    def dim(self) -> int:
        return self.header.shape[1]

    def count(self) -> int:
        return self.header.shape[0]

    def check(self) -> None:
        n = self.count()
        h = self.ids_header
        if h is not None:
            if len(h.shape) != 1 or h.dtype.kind not in "iuU":
                raise InvalidSource(f"ids_path: expected a 1-D array of integers or strings, got {h.shape} {h.dtype}")
            if h.shape[0] != n:
                raise InvalidSource(f"ids_path holds {h.shape[0]} ids for {n} vectors")
        if self.payload_path is not None:
            lines = count_lines(self.payload_path)
            if lines != n:
                raise InvalidSource(f"payload_path has {lines} lines for {n} vectors (one JSON object per row)")

    def chunks(self, cursor: Cursor, size: int) -> Iterator[Chunk]:
        n = self.count()
        row, pos = cursor.row, cursor.payload_byte
        fh = open(self.payload_path, "rb") if self.payload_path is not None else None  # noqa: SIM115
        try:
            if fh is not None:
                fh.seek(pos)
            while row < n:
                m = min(size, n - row)
                vectors = _read_rows(self.path, self.header, row, m)
                if self.ids_path is not None and self.ids_header is not None:
                    ids = _read_rows(self.ids_path, self.ids_header, row, m).tolist()
                else:
                    ids = list(range(row, row + m))
                lines = list(islice(fh, m)) if fh is not None else None
                if lines is not None:
                    pos += sum(map(len, lines))
                    lines += [b""] * (m - len(lines))
                yield NpyChunk(row, m, Cursor(row + m, 0, pos), vectors, ids, lines)
                row += m
        finally:
            if fh is not None:
                fh.close()
