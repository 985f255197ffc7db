"""Sparse vectors of one field, as stored: append-only CSR files, the store of record of the field.

Label `l` owns entries `offsets[l]:offsets[l+1]`; a point that omits the vector has an empty slice.
Three files grow together, and all are fsynced before the write's SQLite transaction commits, exactly
like `vectors.f32` and the token files (`index/tokens.py`):

    sparse.indices   uint32, one per entry (each point's indices sorted ascending)
    sparse.values    float32, one per entry
    sparse.ends      int64 per label: the end of its entries (the CSR offsets without the leading 0)

On open, whatever lies past the committed label count is a torn write and is truncated. Committed
rows never change, so a reader takes an immutable `SparseSnapshot` and keeps using it while the store grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from index.tokens import _RowFile

__all__ = ["SparseFiles", "SparseSnapshot"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
_U32 = np.dtype("<u4")
_F32 = np.dtype("<f4")
_I64 = np.dtype("<i8")


@dataclass(frozen=True, slots=True)
class SparseSnapshot:
    """The first `n_docs` labels' entries (the arrays may hold spare capacity past them)."""

    n_docs: int
    offsets: I64  # [>= n_docs + 1]
    indices: U32
    values: F32

    def row(self, label: int) -> tuple[U32, F32]:
        a, b = int(self.offsets[label]), int(self.offsets[label + 1])
        return self.indices[a:b], self.values[a:b]

    def span(self, start: int, end: int) -> tuple[I64, U32, F32]:
        """Labels `start:end` as CSR: offsets (from 0), indices, values."""
        off = self.offsets[start : end + 1]
        a, b = int(off[0]), int(off[-1])
        return off - a, self.indices[a:b], self.values[a:b]

    def gather(self, labels: I64) -> tuple[I64, U32]:
        """The entries of `labels`: for each entry its label, and its index (for document frequencies)."""
        starts, ends = self.offsets[labels], self.offsets[labels + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        if not total:
            return np.empty(0, np.int64), np.empty(0, np.uint32)
        sub = np.zeros(len(labels) + 1, np.int64)
        np.cumsum(lengths, out=sub[1:])
        rows = np.arange(total, dtype=np.int64) + np.repeat(starts - sub[:-1], lengths)
        return np.repeat(labels, lengths), self.indices[rows]


class SparseFiles:
    """The durable sparse store of one field. Writers are serialised by the caller."""

    def __init__(self, directory: Path, docs: int) -> None:
        """Open (or create) the files; `docs` is the committed label count (anything past it is torn)."""
        directory.mkdir(parents=True, exist_ok=True)
        self._ends = _RowFile(directory / "sparse.ends", _I64, 1, docs)
        try:
            ends = self._ends.read(docs)[:, 0]
            if docs and (ends[0] < 0 or np.any(np.diff(ends) < 0)):
                raise RuntimeError(f"{directory / 'sparse.ends'}: offsets are not monotone")
            n = int(ends[-1]) if docs else 0
            self._idx_file = _RowFile(directory / "sparse.indices", _U32, 1, n)
            self._val_file = _RowFile(directory / "sparse.values", _F32, 1, n)
        except BaseException:
            self.close()
            raise
        offsets = np.zeros(max(1024, docs * 5 // 4) + 1, np.int64)
        offsets[1 : docs + 1] = ends
        indices = np.empty(max(4096, n * 5 // 4), np.uint32)
        values = np.empty(len(indices), np.float32)
        indices[:n] = self._idx_file.read(n)[:, 0]
        values[:n] = self._val_file.read(n)[:, 0]
        self._snap = SparseSnapshot(docs, offsets, indices, values)

    def snapshot(self) -> SparseSnapshot:
        return self._snap

    @property
    def n_docs(self) -> int:
        return self._snap.n_docs

    @property
    def n_entries(self) -> int:
        return int(self._snap.offsets[self._snap.n_docs])

    def ram_bytes(self) -> int:
        s = self._snap
        return int(s.offsets.nbytes + s.indices.nbytes + s.values.nbytes)

    def disk_bytes(self) -> int:
        return sum(f.disk_bytes() for f in (self._ends, self._idx_file, self._val_file))

    def committed_files(self, docs: int) -> list[tuple[Path, int]]:
        """(path, bytes) of the files holding the first `docs` labels, for a snapshot."""
        ends = np.fromfile(self._ends.path, dtype="<i8", count=docs) if docs else np.zeros(0, np.int64)
        if len(ends) != docs:
            raise RuntimeError(f"{self._ends.path}: holds {len(ends)} of {docs} committed labels")
        n = int(ends[-1]) if docs else 0
        return [(self._ends.path, docs * 8), (self._idx_file.path, n * 4), (self._val_file.path, n * 4)]

    def append(self, indices: U32, values: F32, counts: I64) -> None:
        """Store one batch durably (fsync): `counts[i]` entries for each label, 0 where a point omits it."""
        snap = self._snap
        start, e0 = snap.n_docs, int(snap.offsets[snap.n_docs])
        ends = e0 + np.cumsum(counts, dtype=np.int64)
        self._idx_file.write(indices)
        self._val_file.write(values)
        self._ends.write(ends)
        for f in (self._idx_file, self._val_file, self._ends):
            f.sync()
        self._put(start, e0, indices, values, ends)

    def _put(self, start: int, e0: int, indices: U32, values: F32, ends: I64) -> None:
        """Copy a written batch into RAM, growing by reallocation so older snapshots stay valid."""
        s = self._snap
        n, e1 = start + len(ends), e0 + len(indices)
        offsets, idx, val = s.offsets, s.indices, s.values
        if n + 1 > len(offsets):
            offsets = np.zeros(max(n + 1, 2 * len(offsets)), np.int64)
            offsets[: start + 1] = s.offsets[: start + 1]
        if e1 > len(idx):
            idx = np.empty(max(e1, 2 * len(idx)), np.uint32)
            val = np.empty(len(idx), np.float32)
            idx[:e0], val[:e0] = s.indices[:e0], s.values[:e0]
        offsets[start + 1 : n + 1] = ends
        idx[e0:e1], val[e0:e1] = indices, values
        self._snap = SparseSnapshot(n, offsets, idx, val)  # one reference swap publishes the batch

    def extend(self, docs: int) -> None:
        """Take the labels up to `docs` that another process appended and committed (a follower catching
        up: index/catchup.py)."""
        s = self._snap
        start, e0 = s.n_docs, int(s.offsets[s.n_docs])
        if docs <= start:
            return
        ends = self._ends.read_at(start, docs - start)[:, 0]
        e1 = int(ends[-1])
        self._put(start, e0, self._idx_file.read_at(e0, e1 - e0)[:, 0], self._val_file.read_at(e0, e1 - e0)[:, 0], ends)

    def truncate(self, docs: int) -> None:
        """Drop labels past `docs` (the undo of an append whose transaction did not commit)."""
        s = self._snap
        docs = min(docs, s.n_docs)
        e = int(s.offsets[docs])
        self._ends.truncate(docs)
        self._idx_file.truncate(e)
        self._val_file.truncate(e)
        self._snap = SparseSnapshot(docs, s.offsets, s.indices, s.values)

    def close(self) -> None:
        for name in ("_ends", "_idx_file", "_val_file"):
            f = getattr(self, name, None)
            if f is not None:
                f.close()
