"""Streaming a local file as a request body, in chunks, so an upload never holds the file in memory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio

__all__ = ["CHUNK", "UploadLike", "aiter_file", "iter_file", "upload_headers"]

CHUNK = 1 << 20
UploadLike = str | os.PathLike[str] | bytes


def upload_headers(base: dict[str, str], source: UploadLike) -> dict[str, str]:
    # A known length lets the server refuse an oversized upload before a byte is sent.
    size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
    return {**base, "Content-Type": "application/octet-stream", "Content-Length": str(size)}


def iter_file(path: str | os.PathLike[str]) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


async def aiter_file(path: str | os.PathLike[str]) -> AsyncIterator[bytes]:
    async with await anyio.open_file(Path(path), "rb") as fh:
        while chunk := await fh.read(CHUNK):
            yield chunk
