"""Uploaded sources: a request body streamed to a file under the data directory, never held in memory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable
from pathlib import Path
from typing import BinaryIO

from starlette.concurrency import run_in_threadpool

__all__ = ["save_stream"]

_FLUSH = 1 << 20  # gather this many bytes before each write (one thread hop per MiB, not per packet)


async def save_stream(chunks: AsyncIterable[bytes], path: Path) -> int:
    """Write `chunks` to `path` durably (temp name, fsync, rename) and return the byte count.

    Disk writes run in worker threads, so a slow disk never stalls the event loop. On any failure,
    a client disconnect included, nothing is left behind."""
    part = path.with_name(path.name + ".part")
    fh = await run_in_threadpool(_open, part)
    total = 0
    try:
        buf = bytearray()
        async for chunk in chunks:
            buf += chunk
            total += len(chunk)
            if len(buf) >= _FLUSH:
                data, buf = bytes(buf), bytearray()
                await run_in_threadpool(fh.write, data)
        await run_in_threadpool(_finish, fh, bytes(buf))
        await run_in_threadpool(os.replace, part, path)
    except BaseException:
        fh.close()
        part.unlink(missing_ok=True)
        raise
    return total


def _open(path: Path) -> BinaryIO:
    return open(path, "wb")  # noqa: SIM115 - closed by save_stream


def _finish(fh: BinaryIO, tail: bytes) -> None:
    fh.write(tail)
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
