"""Token vectors of multi-vector documents, kept for the exact MaxSim rescore: append-only CSR files.

Label `l` owns token rows `offsets[l]:offsets[l+1]`. Three files grow together, and all of them are
fsynced before the write's SQLite transaction commits, exactly like `vectors.f32`:

    tokens.<f32|f16|i8>   the token rows, `dim` little-endian values each
    tokens.scale          int8 only: one float32 scale per token row (value = code * scale)
    tokens.ends           one int64 per label: the end of its rows (the CSR offsets without the leading 0)

On open, whatever lies past the committed label count is a torn write and is truncated. Labels are
never reused once committed, so committed rows never change; a reader takes an immutable
`TokenSnapshot` and can keep using it while the store grows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from index.readonly import read_only
from quantization.maxsim import TokenStore

try:  # exact MaxSim in place, natively (index/_maxsim.h); numpy where the extension is not built
    from index import _graph as _native
except ImportError:  # pragma: no cover - built without a compiler
    _native = None  # type: ignore[assignment]

__all__ = ["TokenDtype", "TokenFiles", "TokenSnapshot"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
TokenDtype = Literal["float32", "float16", "int8"]

_CODE: dict[str, tuple[str, np.dtype[Any]]] = {
    "float32": ("f32", np.dtype("<f4")),
    "float16": ("f16", np.dtype("<f2")),
    "int8": ("i8", np.dtype("i1")),
}
_F32 = np.dtype("<f4")
_I64 = np.dtype("<i8")


class _RowFile:
    """One append-only file of fixed-width rows; the caller keeps the RAM copy."""

    def __init__(self, path: Path, dtype: np.dtype[Any], width: int, rows: int) -> None:
        self.path = path
        self.dtype = dtype
        self.width = width
        self.row_bytes = dtype.itemsize * width
        self._fh = open(path, "a+b")  # noqa: SIM115 - held open for the store's lifetime
        on_disk = os.fstat(self._fh.fileno()).st_size // self.row_bytes
        if rows > on_disk:
            self._fh.close()
            raise RuntimeError(f"{path}: {on_disk} rows on disk but {rows} committed")
        if not read_only():  # a follower: the rows past `rows` are the primary's write in progress
            self.truncate(rows)

    def read(self, rows: int) -> npt.NDArray[Any]:
        return np.fromfile(self.path, dtype=self.dtype, count=rows * self.width).reshape(rows, self.width)

    def read_at(self, start: int, rows: int) -> npt.NDArray[Any]:
        """Rows `start:start + rows`, which another process appended and committed (a follower). Read through
        the open file, not the path: a compaction's swap may have put another file at the path."""
        raw = os.pread(self._fh.fileno(), rows * self.row_bytes, start * self.row_bytes)
        if len(raw) != rows * self.row_bytes:
            raise RuntimeError(f"{self.path}: fewer than the {start + rows} committed rows on disk")
        return np.frombuffer(raw, dtype=self.dtype).reshape(rows, self.width)

    def write(self, arr: npt.NDArray[Any]) -> None:
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(np.ascontiguousarray(arr, dtype=self.dtype).tobytes())
        self._fh.flush()

    def sync(self) -> None:
        os.fdatasync(self._fh.fileno())

    def truncate(self, rows: int) -> None:
        if os.fstat(self._fh.fileno()).st_size != rows * self.row_bytes:
            self._fh.truncate(rows * self.row_bytes)
            os.fsync(self._fh.fileno())

    def disk_bytes(self) -> int:
        return os.fstat(self._fh.fileno()).st_size

    def close(self) -> None:
        self._fh.close()


@dataclass(frozen=True, slots=True)
class TokenSnapshot:
    """The first `n_docs` labels' tokens: `codes[offsets[l]:offsets[l+1]]` (arrays may hold spare rows)."""

    n_docs: int
    offsets: I64  # [>= n_docs + 1]
    codes: npt.NDArray[Any]  # [>= offsets[n_docs], dim]
    scale: F32 | None  # int8 only, one per token row

    def _store(self, rows: I64 | slice, offsets: I64) -> TokenStore:
        codes = self.codes[rows]
        return TokenStore(codes, offsets, None if self.scale is None else self.scale[rows])

    def scores(self, query: F32, labels: I64 | None = None, *, n_docs: int | None = None) -> F32:
        """Exact MaxSim of `query` [t, dim] against `labels` in order, or else every label below `n_docs`."""
        n = self.n_docs if n_docs is None else min(n_docs, self.n_docs)
        if _native is not None:
            ids = None if labels is None else np.ascontiguousarray(labels, dtype=np.int64)
            return _native.maxsim(query, self.codes, self.scale, self.offsets, ids, n)
        off = self.offsets[: n + 1]
        if labels is None:
            return self._store(slice(0, int(off[-1])), off).scores(query)
        rows, sub = _gather(off, labels)
        return self._store(rows, sub).scores(query)

    def tokens(self, label: int) -> F32:
        """The stored tokens of one label, as float32 (dequantized)."""
        a, b = int(self.offsets[label]), int(self.offsets[label + 1])
        out = self.codes[a:b].astype(np.float32)
        if self.scale is not None:
            out *= self.scale[a:b, None]
        return out


def _gather(offsets: I64, labels: I64) -> tuple[I64, I64]:
    """Token rows of `labels` (in order) and the CSR offsets of that subset."""
    starts, lengths = offsets[labels], offsets[labels + 1] - offsets[labels]
    sub = np.zeros(len(labels) + 1, dtype=np.int64)
    np.cumsum(lengths, out=sub[1:])
    rows = np.arange(sub[-1], dtype=np.int64) + np.repeat(starts - sub[:-1], lengths)
    return rows, sub


class TokenFiles:
    """The durable token store of one collection. Writers are serialised by the caller."""

    def __init__(self, directory: Path, dim: int, dtype: TokenDtype, docs: int) -> None:
        """Open (or create) the files; `docs` is the committed label count (anything past it is torn)."""
        self.dim = dim
        self.dtype: TokenDtype = dtype
        suffix, code_dtype = _CODE[dtype]
        self._ends = _RowFile(directory / "tokens.ends", _I64, 1, docs)
        self._scale_file: _RowFile | None = None
        try:
            ends = self._ends.read(docs)[:, 0]
            n_tokens = int(ends[-1]) if docs else 0
            if docs and (ends[0] < 0 or np.any(np.diff(ends) < 0)):
                raise RuntimeError(f"{directory / 'tokens.ends'}: offsets are not monotone")
            self._codes_file = _RowFile(directory / f"tokens.{suffix}", code_dtype, dim, n_tokens)
            if dtype == "int8":
                self._scale_file = _RowFile(directory / "tokens.scale", _F32, 1, n_tokens)
        except BaseException:
            self._ends.close()
            if hasattr(self, "_codes_file"):
                self._codes_file.close()
            raise
        self._offsets = np.zeros(max(1024, docs * 5 // 4) + 1, dtype=np.int64)
        self._offsets[1 : docs + 1] = ends
        self._codes: npt.NDArray[Any] = np.empty((max(4096, n_tokens * 5 // 4), dim), dtype=code_dtype)
        self._codes[:n_tokens] = self._codes_file.read(n_tokens)
        self._scale: F32 | None = None
        if self._scale_file is not None:
            self._scale = np.empty(len(self._codes), dtype=np.float32)
            self._scale[:n_tokens] = self._scale_file.read(n_tokens)[:, 0]
        self._snap = TokenSnapshot(docs, self._offsets, self._codes, self._scale)

    # -- reads -----------------------------------------------------------------------------

    def snapshot(self) -> TokenSnapshot:
        return self._snap

    @property
    def n_docs(self) -> int:
        return self._snap.n_docs

    @property
    def n_tokens(self) -> int:
        return int(self._snap.offsets[self._snap.n_docs])

    @property
    def bytes_per_token(self) -> int:
        """Stored bytes of one token vector: its codes, plus its float32 scale under int8."""
        return self.dim * _CODE[self.dtype][1].itemsize + (4 if self.dtype == "int8" else 0)

    def token_bytes(self) -> int:
        """Bytes of the stored token vectors (codes and scales), not counting spare capacity."""
        return self.n_tokens * self.bytes_per_token

    def ram_bytes(self) -> int:
        scale = 0 if self._scale is None else self._scale.nbytes
        return int(self._codes.nbytes + scale + self._offsets.nbytes)

    def disk_bytes(self) -> int:
        files = [self._ends, self._codes_file] + ([self._scale_file] if self._scale_file else [])
        return sum(f.disk_bytes() for f in files)

    def committed_files(self, docs: int) -> list[tuple[Path, int]]:
        """(path, bytes) of the files holding the first `docs` labels, for a snapshot."""
        ends = np.fromfile(self._ends.path, dtype="<i8", count=docs) if docs else np.zeros(0, np.int64)
        if len(ends) != docs:
            raise RuntimeError(f"{self._ends.path}: holds {len(ends)} of {docs} committed labels")
        n_tokens = int(ends[-1]) if docs else 0
        out = [(self._ends.path, docs * 8), (self._codes_file.path, n_tokens * self._codes_file.row_bytes)]
        if self._scale_file is not None:
            out.append((self._scale_file.path, n_tokens * 4))
        return out

    # -- writes ----------------------------------------------------------------------------

    def append(self, tokens: F32, counts: I64) -> int:
        """Store one batch durably (fsync) and return its first label. `tokens` [sum(counts), dim] float32."""
        snap = self._snap
        start, t0 = snap.n_docs, int(snap.offsets[snap.n_docs])
        scale: F32 | None = None
        if self.dtype == "int8":
            q = TokenStore.from_float(tokens, np.concatenate([[0], np.cumsum(counts)]), "int8", "row")
            codes, scale = q.codes, q.row_scale
        else:
            codes = tokens.astype(_CODE[self.dtype][1])
        ends = t0 + np.cumsum(counts, dtype=np.int64)
        self._codes_file.write(codes)
        if self._scale_file is not None and scale is not None:
            self._scale_file.write(scale)
        self._ends.write(ends)
        self._codes_file.sync()
        if self._scale_file is not None:
            self._scale_file.sync()
        self._ends.sync()
        self._put(start, t0, codes, scale, ends)
        return start

    def _put(self, start: int, t0: int, codes: npt.NDArray[Any], scale: F32 | None, ends: I64) -> None:
        """Copy a written batch into RAM, growing by reallocation so older snapshots stay valid."""
        n, t1 = start + len(ends), t0 + len(codes)
        offsets, arr, sc = self._offsets, self._codes, self._scale
        if n + 1 > len(offsets):
            offsets = np.zeros(max(n + 1, 2 * len(offsets)), dtype=np.int64)
            offsets[: start + 1] = self._offsets[: start + 1]
        if t1 > len(arr):
            arr = np.empty((max(t1, 2 * len(arr)), self.dim), dtype=arr.dtype)
            arr[:t0] = self._codes[:t0]
            if sc is not None:
                sc = np.empty(len(arr), dtype=np.float32)
                sc[:t0] = self._scale[:t0]  # type: ignore[index]
        offsets[start + 1 : n + 1] = ends
        arr[t0:t1] = codes
        if sc is not None and scale is not None:
            sc[t0:t1] = scale
        self._offsets, self._codes, self._scale = offsets, arr, sc
        self._snap = TokenSnapshot(n, offsets, arr, sc)  # one reference swap publishes the batch

    def extend(self, docs: int) -> None:
        """Take the labels up to `docs` that another process appended and committed (a follower catching
        up: index/catchup.py)."""
        snap = self._snap
        start, t0 = snap.n_docs, int(snap.offsets[snap.n_docs])
        if docs <= start:
            return
        ends = self._ends.read_at(start, docs - start)[:, 0]
        t1 = int(ends[-1])
        codes = self._codes_file.read_at(t0, t1 - t0)
        scale = None if self._scale_file is None else self._scale_file.read_at(t0, t1 - t0)[:, 0]
        self._put(start, t0, codes, scale, ends)

    def truncate(self, docs: int) -> None:
        """Drop labels past `docs` (the undo of an append whose transaction did not commit)."""
        t = int(self._offsets[docs])
        self._ends.truncate(docs)
        self._codes_file.truncate(t)
        if self._scale_file is not None:
            self._scale_file.truncate(t)
        self._snap = TokenSnapshot(min(docs, self._snap.n_docs), self._offsets, self._codes, self._scale)

    def close(self) -> None:
        for f in (self._ends, self._codes_file, self._scale_file):
            if f is not None:
                f.close()
