"""The Chroma server (`chroma run`, chromadb's Rust HTTP server) as a benchmark baseline, over its own REST API.

Everything goes through the v2 REST endpoints that a client would call (JSON float lists), so recall is
measured through the same query endpoint the load runs against.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

__all__ = ["Chroma", "chroma_binary"]

_DB = "/api/v2/tenants/default_tenant/databases/default_database"


def chroma_binary() -> str | None:
    """`chroma` beside this Python (the venv's, from chromadb), else on PATH."""
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


def _start(cmd: list[str], url: str, log: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"chroma exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/api/v2/heartbeat", timeout=1).status_code == 200:
                return proc
        time.sleep(0.1)
    _stop(proc)
    raise RuntimeError("chroma did not answer its heartbeat within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Chroma:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], cmd: list[str], log: Any) -> None:
        self.url = url
        self.proc = proc
        self.http = httpx.Client(base_url=url, timeout=600)
        self.collection_id = ""
        self._cmd, self._log = cmd, log

    @classmethod
    @contextlib.contextmanager
    def run(cls, path: Path, port: int) -> Iterator[Chroma]:
        binary = chroma_binary()
        if binary is None:
            raise RuntimeError("chroma is not installed (pip install chromadb==1.5.9)")
        log = open(path.parent / f"chroma-{port}.log", "wb")  # noqa: SIM115 - closed below
        cmd = [binary, "run", "--path", str(path), "--port", str(port)]
        url = f"http://127.0.0.1:{port}"
        c = None
        try:
            c = cls(url, _start(cmd, url, log), cmd, log)
            yield c
        finally:
            if c is not None:
                c.http.close()
                _stop(c.proc)
            log.close()

    def restart(self) -> None:
        """Stop the server and start it again on the same files (it loads every collection's config anew)."""
        _stop(self.proc)
        self.http.close()
        self.proc = _start(self._cmd, self.url, self._log)
        self.http = httpx.Client(base_url=self.url, timeout=600)

    def _ok(self, r: httpx.Response) -> Any:
        if r.status_code >= 300:
            raise RuntimeError(f"chroma {r.request.method} {r.request.url.path}: {r.status_code} {r.text[:500]}")
        return r.json()

    def create(self, name: str, m: int, ef_construction: int, ef_search: int) -> None:
        hnsw = {"space": "ip", "max_neighbors": m, "ef_construction": ef_construction, "ef_search": ef_search}
        body = {"name": name, "configuration": {"hnsw": hnsw}}
        self.collection_id = self._ok(self.http.post(f"{_DB}/collections", json=body))["id"]

    def add(self, base: np.ndarray, batch: int = 5000) -> None:
        for s in range(0, len(base), batch):
            chunk = base[s : s + batch]
            ids = [str(i) for i in range(s, s + len(chunk))]
            self._ok(self.http.post(f"{self.path}/add", json={"ids": ids, "embeddings": chunk.tolist()}))

    def count(self) -> int:
        return int(self._ok(self.http.get(f"{self.path}/count")))

    def set_ef(self, ef_search: int) -> None:
        """Search at `ef_search` from now on. The update is stored at once, but chroma 1.5.9 keeps searching
        a loaded index at the ef it was loaded with (measured: recall 0.9894 at ef 16 and at 256 alike
        on 20k pypi-minilm); a restart loads it with the new one (0.8634 at 16, 0.9978 at 256)."""
        body = {"new_configuration": {"hnsw": {"ef_search": ef_search}}}
        self._ok(self.http.put(self.path, json=body))
        self.restart()

    @property
    def path(self) -> str:
        return f"{_DB}/collections/{self.collection_id}"

    @property
    def query_path(self) -> str:
        return f"{self.path}/query"

    @staticmethod
    def query_body(q: np.ndarray, k: int = 10) -> dict[str, Any]:
        return {"query_embeddings": [q.tolist()], "n_results": k, "include": ["distances"]}

    def search(self, queries: np.ndarray, k: int = 10, batch: int = 100) -> list[list[int]]:
        out: list[list[int]] = []
        for s in range(0, len(queries), batch):
            body = {"query_embeddings": queries[s : s + batch].tolist(), "n_results": k, "include": ["distances"]}
            out.extend([int(i) for i in ids] for ids in self._ok(self.http.post(self.query_path, json=body))["ids"])
        return out
