"""`nestor serve --processes N`: N server processes on one port and one data directory, one writer.

One process is bound by the GIL: HTTP, JSON, pydantic and hits are Python, and the native search is a
fifth of a request. So the supervisor (this module's `supervise`, the `nestor serve` process itself)
binds N listening sockets on the port (SO_REUSEPORT: the kernel spreads connections over them) and
starts N children, one on each:

- **process 0, the primary**, is today's server: every write, the indexer's saves, compaction,
  snapshots, ingest jobs, the dashboard and /metrics. It also listens on a Unix socket, for the others.
- **processes 1..N-1, followers**, serve searches (`POST /collections/{name}/points/search`,
  `.../search/batch`, `.../query`) from the same files, read-only (index/follow.py), after catching up
  with what the primary committed. Every other request is forwarded to the primary over the Unix
  socket and answered with the primary's response, so writes, admin calls and their guarantees are the
  primary's, whichever process the kernel gave the connection to.

The supervisor restarts a child that dies (a follower reloads the data; a primary recovers it as a
restart does) and stops them all on SIGTERM or SIGINT.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from index.stamp import WriteStamp

__all__ = ["SERVED_BY", "FollowerGate", "is_follower", "process_stamp", "serve_child", "supervise"]

log = logging.getLogger("nestor.processes")

ROLE_ENV = "NESTOR_PROCESS_ROLE"  # set by the supervisor in each child: primary or follower
FD_ENV = "NESTOR_PROCESS_FD"  # the shared listening socket
UDS_FD_ENV = "NESTOR_PROCESS_UDS_FD"  # the primary's Unix socket (the primary's child only)
UDS_PATH_ENV = "NESTOR_PROCESS_UDS"  # its path (followers connect to it)
STAMP_ENV = "NESTOR_PROCESS_STAMP"  # the write stamp's file (index/stamp.py): the primary bumps, followers read

# What a follower answers itself: searches, which read. Anything else goes to the primary.
_LOCAL_READ = re.compile(r"^/collections/([^/]+)/points/(?:search|search/batch|query)$")
SERVED_BY = b"x-nestor-follower"  # on every response a follower gives
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer"}
_RESTART_DELAY = 1.0  # seconds before a dead child is started again


def is_follower() -> bool:
    return os.environ.get(ROLE_ENV) == "follower"


def process_stamp() -> WriteStamp | None:
    """The write stamp the supervisor made for its children (the primary's to bump, the followers' to read);
    None in a single server."""
    path = os.environ.get(STAMP_ENV)
    if not path or os.environ.get(ROLE_ENV) not in ("primary", "follower"):
        return None
    return WriteStamp(Path(path), writer=not is_follower())


class FollowerGate:
    """A follower's outermost middleware: searches are served here once caught up, the rest forwarded."""

    def __init__(self, app: ASGIApp, uds: str) -> None:
        self.app = app
        self.uds = uds
        self._client: httpx.AsyncClient | None = None
        # which process answered, and how (tests and operators): "local <pid>" or "forwarded <pid>"
        self._local = (SERVED_BY, f"local {os.getpid()}".encode())
        self._forwarded = (SERVED_BY, f"forwarded {os.getpid()}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        m = _LOCAL_READ.match(scope["path"]) if scope["method"] == "POST" else None
        catalog = getattr(scope["app"].state, "catalog", None)
        if m is None or catalog is None:
            await self._forward(scope, receive, send)
            return
        name = m.group(1)
        if catalog.stale(name):  # the primary committed since this process loaded `name`
            await run_in_threadpool(catalog.sync, name)
        await self.app(scope, receive, _marked(send, self._local))

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._client is None:
            transport = httpx.AsyncHTTPTransport(uds=self.uds)
            self._client = httpx.AsyncClient(transport=transport, base_url="http://primary", timeout=None)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]

        async def body() -> Any:
            while True:
                msg: Message = await receive()
                if msg["type"] == "http.disconnect":
                    return
                if msg.get("body"):
                    yield msg["body"]
                if not msg.get("more_body"):
                    return

        path = scope.get("raw_path") or scope["path"].encode()
        url = path.decode("latin-1") + ("?" + scope["query_string"].decode("latin-1") if scope["query_string"] else "")
        req = self._client.build_request(scope["method"], url, headers=headers, content=body())
        try:
            resp = await self._client.send(req, stream=True)
        except httpx.TransportError as exc:
            await _unavailable(send, exc)
            return
        try:
            out = [(k.lower(), v) for k, v in resp.headers.raw if k.lower() not in _HOP_BY_HOP]
            out.append(self._forwarded)
            await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await resp.aclose()


def _marked(send: Send, header: tuple[bytes, bytes]) -> Send:
    async def marked(msg: Message) -> None:
        if msg["type"] == "http.response.start":
            msg = {**msg, "headers": [*msg.get("headers", []), header]}
        await send(msg)

    return marked


async def _unavailable(send: Send, exc: Exception) -> None:
    body = b'{"error":{"type":"unavailable","message":"the primary process is not reachable; retry"}}'
    log.warning("follower: cannot reach the primary: %s", exc)
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- the children -------------------------------------------------------------------------------


def serve_child(app: Any, log_level: str) -> None:
    """Run `app` on the sockets the supervisor handed this process."""
    import uvicorn

    sockets = [socket.socket(fileno=int(os.environ[FD_ENV]))]
    if os.environ.get(UDS_FD_ENV):
        sockets.append(socket.socket(fileno=int(os.environ[UDS_FD_ENV])))
    config = uvicorn.Config(app, log_level=log_level, access_log=False)
    uvicorn.Server(config).run(sockets=sockets)


def _child_main() -> int:
    """`python -m server.processes`: one child, its settings from the environment the supervisor set."""
    from index.runtime import configure_threads

    configure_threads()  # before server.app imports faiss
    from server.app import create_app
    from server.cli import limit_malloc_arenas
    from server.settings import Settings

    settings = Settings()
    if settings.malloc_arenas:
        limit_malloc_arenas(settings.malloc_arenas)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_child(create_app(settings), settings.log_level)
    return 0


# -- the supervisor -----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies, even by `kill -9`, so that no orphan
    keeps the port and the data directory (Linux's PR_SET_PDEATHSIG; elsewhere a no-op)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Children:
    def __init__(
        self, n: int, tcp: list[socket.socket], uds: socket.socket, uds_path: str, env: dict[str, str]
    ) -> None:
        self.n, self.tcp, self.uds, self.uds_path, self.env = n, tcp, uds, uds_path, env  # env names the stamp
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self.stopping = False

    def start(self, i: int) -> None:
        env = {**self.env, FD_ENV: str(self.tcp[i].fileno()), UDS_PATH_ENV: self.uds_path}
        fds = [self.tcp[i].fileno()]
        if i == 0:
            env[ROLE_ENV] = "primary"
            env[UDS_FD_ENV] = str(self.uds.fileno())
            fds.append(self.uds.fileno())
        else:
            env[ROLE_ENV] = "follower"
            env.pop(UDS_FD_ENV, None)
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "server.processes"], env=env, pass_fds=fds, preexec_fn=_die_with_parent
        )

    def wait_primary(self, timeout: float = 600.0) -> bool:
        """True once the primary answers /readyz on the Unix socket (it has recovered and opened the data)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(transport=httpx.HTTPTransport(uds=self.uds_path), base_url="http://primary") as c:
            while time.monotonic() < deadline and not self.stopping:
                p = self.procs[0]
                if p is None or p.poll() is not None:
                    return False
                try:
                    if c.get("/readyz", timeout=1.0).status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.stopping = True
        for p in reversed(self.procs):  # followers first: the primary's close saves the indexes
            if p is not None and p.poll() is None:
                p.send_signal(sig)
        for p in reversed(self.procs):
            if p is not None:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def _listen(host: str, port: int) -> socket.socket:
    """One of the N listening sockets on `host:port`, one per child (SO_REUSEPORT). One shared socket
    measured badly: the process that woke first accepted all 8 of wrk's connections, and the other
    served none. With a socket each, the kernel spreads new connections over them by a hash of the
    client's address and port. The supervisor keeps every socket open, so a child that dies leaves its
    queued connections to the one that replaces it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(n: int, host: str, port: int, env: dict[str, str]) -> int:
    """Bind `host:port`, run a primary and `n - 1` followers on it, restart any that dies; until a signal."""
    tcp = [_listen(host, port) for _ in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="nestor-procs-"))
    uds_path = str(tmp / "primary.sock")
    uds = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    uds.bind(uds_path)
    uds.listen(2048)
    uds.set_inheritable(True)
    stamp_path = tmp / "write.stamp"  # outlives the children: a restarted primary counts on from its value
    WriteStamp(stamp_path, writer=True).close()
    kids = _Children(n, tcp, uds, uds_path, {**env, STAMP_ENV: str(stamp_path)})
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the readiness polls

    def on_signal(signum: int, _frame: Any) -> None:
        kids.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        kids.start(0)
        if kids.wait_primary():  # followers load what the primary recovered, never a half-recovered store
            for i in range(1, n):
                kids.start(i)
        while not kids.stopping:
            for i, p in enumerate(kids.procs):
                if p is not None and p.poll() is not None and not kids.stopping:
                    log.warning("process %d (pid %d) exited with %s; starting it again", i, p.pid, p.returncode)
                    time.sleep(_RESTART_DELAY)
                    kids.start(i)
                    if i == 0:
                        kids.wait_primary()
                elif p is None and i > 0 and kids.procs[0] is not None and not kids.stopping:
                    if kids.wait_primary(timeout=1.0):
                        kids.start(i)
            time.sleep(0.2)
    finally:
        kids.stop()
        for t in tcp:
            t.close()
        uds.close()
        Path(uds_path).unlink(missing_ok=True)
        stamp_path.unlink(missing_ok=True)
        tmp.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main())
