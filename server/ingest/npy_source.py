"""The `.npy` ingest source: a 2-D numeric matrix read by row range, with optional ids (a 1-D `.npy`) and
payloads (JSON Lines, one per row) beside it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from server.ingest.errors import InvalidSource
from server.ingest.rows import Chunk, Cursor, Rows, count_lines

__all__ = ["NpySource"]


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
