"""Write admission: 503 with `Retry-After` at once when the server cannot take a write, before any of it
is read or written.

- **Pending writes.** At most `max_pending` writes in progress. A collection applies one write batch at a
  time (its write lock, an fsync each). A burst faster than that used to wait in the thread pool without
  bound, until clients timed out and retried into the same queue. Now the writes past the limit are
  refused straight away with `503 overloaded`, which costs the server nothing, and a client that waits and
  retries gets through.
- **Memory.** With `max_rss` set, a write that adds data (an upsert, a collection create or restore, an
  ingest job) is refused with `503 overloaded` while the process's resident memory is past it. Deletes
  still pass: they are how an operator makes room.

Reads are never refused here.
"""

from __future__ import annotations

import os
import re
import time

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["WriteAdmission", "current_rss"]

_Q = r"(?:/qdrant)?"  # the Qdrant-compatible surface (server/qdrant) takes the same writes
# The write routes: upsert (PUT .../points) and delete (POST .../points/delete).
_WRITES = {
    "PUT": re.compile(r"^/collections/[^/]+/points/?$"),
    "POST": re.compile(r"^/collections/[^/]+/points/delete$"),
}
# The writes that add data, refused past `max_rss`.
_GROWS = {
    "PUT": re.compile(rf"^{_Q}/collections/[^/]+(?:/points)?/?$"),
    "POST": re.compile(
        rf"^(?:/jobs/ingest(?:/upload)?|{_Q}/collections/[^/]+/snapshots/(?:restore|upload|recover))/?$"
    ),
}
RETRY_AFTER_SECONDS = 1
RSS_RETRY_AFTER_SECONDS = 5  # memory is freed by the indexer finishing or an operator, not in a moment
_RSS_EVERY = 0.05  # seconds between two reads of /proc/self/statm: a burst of writes reads it once
_PAGE = os.sysconf("SC_PAGE_SIZE")


def current_rss() -> int:
    """This process's resident set size in bytes (Linux: /proc/self/statm; elsewhere 0, never refused)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class WriteAdmission:
    def __init__(self, app: ASGIApp, max_pending: int, max_rss: int | None = None) -> None:
        self.app = app
        self.max_pending = max_pending
        self.max_rss = max_rss  # bytes
        self.pending = 0  # writes admitted and not answered yet (the event loop is one thread: no lock)
        self.refused = 0
        self.refused_memory = 0
        self._rss = 0
        self._rss_at = -1.0

    def rss(self) -> int:
        now = time.monotonic()
        if now - self._rss_at >= _RSS_EVERY:
            self._rss, self._rss_at = current_rss(), now
        return self._rss

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", ""), scope["path"]
        if self.max_rss is not None and (grows := _GROWS.get(method)) is not None and grows.match(path):
            if (rss := self.rss()) > self.max_rss:
                self.refused_memory += 1
                mib = f"{rss / 2**20:.0f} MiB resident, past max_rss_mb {self.max_rss / 2**20:.0f}"
                await self._refuse(send, f"{mib}; deletes and reads are still served", RSS_RETRY_AFTER_SECONDS)
                return
        route = _WRITES.get(method)
        if route is None or not route.match(path):
            await self.app(scope, receive, send)
            return
        if self.pending >= self.max_pending:
            self.refused += 1
            await self._refuse(
                send, f"{self.max_pending} writes are in progress (max_pending_writes)", RETRY_AFTER_SECONDS
            )
            return
        self.pending += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.pending -= 1

    @staticmethod
    async def _refuse(send: Send, why: str, retry_after: int) -> None:
        message = f"{why}; retry after {retry_after} s"
        body = b'{"error":{"type":"overloaded","message":"' + message.encode() + b'"}}'
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
