"""What every ingest source shares: the resume cursor, the field mapping, a decoded chunk of rows, and the
`Chunk` and `Source` protocols the readers (`sources.py`, `npy_source.py`) implement."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy.typing as npt

__all__ = ["Chunk", "Cursor", "Fields", "Rows", "Source", "count_lines"]

_COUNT_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a source resumes: rows consumed, and byte offsets for the line-oriented files."""

    row: int = 0
    byte: int = 0  # in a JSON Lines source
    payload_byte: int = 0  # in the payload file of a .npy source


@dataclass(frozen=True, slots=True)
class Fields:
    """Which field holds what. `id` None numbers rows from 0; at most one of `text` and `vector` is set
    (neither: a sparse-only collection's rows of `sparse` fields only)."""

    id: str | None
    text: str | None
    vector: str | None
    payload: tuple[str, ...] | None  # None: every other field
    sparse: tuple[tuple[str, str], ...] = ()  # (sparse vector name, field) pairs

    def vector_keys(self) -> set[str | None]:
        """The fields that hold vectors, which the payload leaves out."""
        return {self.vector, *(f for _, f in self.sparse)}


@dataclass(slots=True)
class Rows:
    """One chunk after decoding: raw per-row values, still to be validated. `errors` and `skip` hold row
    offsets within the chunk: rows that could not be read, and blank lines."""

    ids: list[Any]
    texts: list[Any] | None = None
    vectors: npt.NDArray[Any] | list[Any] | None = None
    payloads: list[Any] | None = None
    sparse: dict[str, list[Any]] = field(default_factory=dict)  # raw sparse values by vector name
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


def count_lines(path: Path) -> int:
    """Lines in a file, counting a last line without a newline."""
    n = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(_COUNT_BLOCK):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")
