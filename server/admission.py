"""Write admission: at most `max_pending` writes in progress; past that, 503 with `Retry-After` at once.

A collection applies one write batch at a time (its write lock, an fsync each). A burst faster than that
used to wait in the thread pool without bound, until clients timed out and retried into the same queue.
Now the writes past the limit are refused straight away with `503 overloaded` and `Retry-After`, which
costs the server nothing, and a client that waits and retries gets through. Reads are never refused here.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["WriteAdmission"]

# The write routes: upsert (PUT .../points) and delete (POST .../points/delete).
_WRITES = {
    "PUT": re.compile(r"^/collections/[^/]+/points/?$"),
    "POST": re.compile(r"^/collections/[^/]+/points/delete$"),
}
RETRY_AFTER_SECONDS = 1


class WriteAdmission:
    def __init__(self, app: ASGIApp, max_pending: int) -> None:
        self.app = app
        self.max_pending = max_pending
        self.pending = 0  # writes admitted and not answered yet (the event loop is one thread: no lock)
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _WRITES.get(scope.get("method", "")) if scope["type"] == "http" else None
        if route is None or not route.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.pending >= self.max_pending:
            self.refused += 1
            await self._refuse(send)
            return
        self.pending += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.pending -= 1

    async def _refuse(self, send: Send) -> None:
        body = (
            b'{"error":{"type":"overloaded","message":"'
            + f"{self.max_pending} writes are in progress (max_pending_writes); retry after "
            f"{RETRY_AFTER_SECONDS} s".encode()
            + b'"}}'
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
