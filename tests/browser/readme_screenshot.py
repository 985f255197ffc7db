"""Make docs/dashboard.png: the dashboard over a few real collections (not a test; run it by hand).

    .venv/bin/python -m tests.browser.readme_screenshot [--out docs/dashboard.png]

Loads MiniLM embeddings of PyPI summaries (../shared/data/pypi-minilm) into four collections, sends real
queries and some upserts for a minute, starts an ingest job, and photographs the page in Chromium.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.serverproc import ServerProcess

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "pypi-minilm"
COLLECTIONS: dict[str, tuple[dict[str, Any], int]] = {
    "pypi-summaries": ({"type": "hnsw"}, 20_000),
    "pypi-compressed": ({"type": "ivf_pq"}, 20_000),
    "pypi-exact": ({"type": "flat"}, 5_000),
    "pypi-low-ef": ({"type": "hnsw", "m": 8, "ef_construction": 32, "ef": 2}, 20_000),
}


def _load(http: httpx.Client, name: str, index: dict[str, Any], base: np.ndarray, texts: list[str]) -> None:
    http.put(f"/collections/{name}", json={"dim": 384, "index": index}).raise_for_status()
    for i in range(0, len(base), 2000):
        ids = list(range(i, min(i + 2000, len(base))))
        points = [{"id": j, "vector": base[j].tolist(), "payload": {"summary": texts[j]}} for j in ids]
        http.put(f"/collections/{name}/points", json={"points": points}).raise_for_status()


def _traffic(url: str, queries: np.ndarray, base: np.ndarray, stop: threading.Event) -> None:
    rng = np.random.default_rng(0)
    with httpx.Client(base_url=url, timeout=60) as http:
        n = 0
        while not stop.is_set():
            for name in COLLECTIONS:
                q = queries[rng.integers(len(queries))]
                http.post(f"/collections/{name}/points/search", json={"vector": q.tolist(), "limit": 10})
            n += 1
            if n % 40 == 0:  # now and then, overwrite a few points
                ids = rng.integers(0, 5000, 50).tolist()
                points = [{"id": i, "vector": base[i].tolist()} for i in dict.fromkeys(ids)]
                http.put("/collections/pypi-exact/points", json={"points": points})
            time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    base = np.load(DATA / "base.npy", mmap_mode="r")
    queries = np.asarray(np.load(DATA / "queries.npy"), dtype=np.float32)
    texts = (DATA / "base.txt").read_text().splitlines()
    work = Path(tempfile.mkdtemp())
    (work / "data").mkdir()
    env = {
        "NESTOR_PROBE_INTERVAL_SECONDS": "5",
        "NESTOR_STATS_BUCKET_SECONDS": "5",
        "NESTOR_STATS_WINDOW_SECONDS": "300",
        "NESTOR_INGEST_ROOTS": str(work),
    }
    srv = ServerProcess(work / "data", env=env).start()
    stop = threading.Event()
    traffic: threading.Thread | None = None
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            for name, (index, n) in COLLECTIONS.items():
                _load(http, name, index, np.asarray(base[:n], dtype=np.float32), texts)
            traffic = threading.Thread(target=_traffic, args=(srv.url, queries, base, stop))
            traffic.start()
            time.sleep(args.seconds)
            http.put("/collections/pypi-ingest", json={"dim": 384, "index": {"type": "hnsw"}}).raise_for_status()
            src = work / "more.npy"
            np.save(src, np.asarray(base[30_000:90_000], dtype=np.float32))
            job = {"collection": "pypi-ingest", "source": {"path": str(src)}, "batch_size": 20}
            http.post("/jobs/ingest", json=job).raise_for_status()
            time.sleep(4)
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(srv.url + "/dashboard?collection=pypi-summaries&refresh=1000")
                page.wait_for_selector("tr[data-name]")
                time.sleep(3)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
    finally:
        stop.set()
        if traffic is not None:
            traffic.join()
        srv.stop()
    print(f"wrote {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
