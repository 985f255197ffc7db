"""Closed-loop HTTP load at a fixed number of connections: `wrk` when installed, else a small Python generator.

Both POST the bodies of a file (one JSON body a line) in rotation, each connection keeping its socket
open, and report the same record: requests per second, p50/p99 latency, and errors (non-2xx answers and
socket errors). `wrk` (a C load generator: `apt-get install -y wrk`) is what the tables quote. The Python
generator exists so that the benchmark's smoke test needs nothing outside the venv; one Python thread per
connection cannot load a server as hard, so its numbers are not comparable with wrk's.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

__all__ = ["WRK_THREADS", "load", "wrk_path"]

WRK_THREADS = 1  # one epoll thread drives 32 connections easily, and leaves the 2 cores to the servers

# Each wrk thread runs this in its own Lua state: it reads the bodies, starts at its own offset and
# prints the summary as one JSON line at the end.
_LUA = """
local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do bodies[#bodies + 1] = line end
local path = os.getenv("WRK_PATH")
local n = 0
local offset = 0
local next_thread = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
setup = function(thread) thread:set("offset", next_thread * 101); next_thread = next_thread + 1 end
request = function()
  n = n + 1
  return wrk.format(nil, path, nil, bodies[(offset + n) % #bodies + 1])
end
done = function(s, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\\n',
    s.requests, s.duration, s.errors.status,
    s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def load(url: str, path: str, bodies: Path, connections: int, seconds: float, use_wrk: bool = True) -> dict[str, Any]:
    """`connections` clients POSTing to `url + path` for `seconds`; one record (see the module docstring)."""
    wrk = wrk_path() if use_wrk else None
    if wrk is not None:
        return _wrk(wrk, url, path, bodies, connections, seconds)
    return _python(url, path, bodies, connections, seconds)


def _wrk(wrk: str, url: str, path: str, bodies: Path, connections: int, seconds: float) -> dict[str, Any]:
    threads = min(WRK_THREADS, connections)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_LUA)
    try:
        cmd = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "-s", f.name, url]
        env = {"WRK_BODIES": str(bodies), "WRK_PATH": path, "PATH": "/usr/bin:/bin"}
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    finally:
        Path(f.name).unlink()
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    if run.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stdout[-1000:]} {run.stderr[-1000:]}")
    r = json.loads(lines[-1])
    return {
        "generator": "wrk",
        "wrk_threads": threads,
        "connections": connections,
        "requests": r["requests"],
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": r["status_errors"] + r["socket_errors"],
    }


def _python(url: str, path: str, bodies_file: Path, connections: int, seconds: float) -> dict[str, Any]:
    bodies = [line.encode() for line in bodies_file.read_text().splitlines() if line]
    parts = urlsplit(url)
    deadline = time.perf_counter() + seconds
    lat: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
        i = k * 101
        try:
            while time.perf_counter() < deadline:
                body = bodies[i % len(bodies)]
                i += 1
                t0 = time.perf_counter()
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                lat[k].append(time.perf_counter() - t0)
                errors[k] += resp.status != 200
        except (OSError, http.client.HTTPException):
            errors[k] += 1
        finally:
            conn.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=client, args=(k,)) for k in range(connections)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    all_lat = np.array([x for per in lat for x in per] or [0.0])
    return {
        "generator": "python",
        "wrk_threads": 0,
        "connections": connections,
        "requests": int(sum(len(per) for per in lat)),
        "rps": sum(len(per) for per in lat) / elapsed,
        "p50_ms": float(np.percentile(all_lat, 50) * 1000),
        "p99_ms": float(np.percentile(all_lat, 99) * 1000),
        "errors": int(sum(errors)),
    }
