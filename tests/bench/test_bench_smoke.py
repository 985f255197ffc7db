"""Every benchmark script runs end to end in tiny mode, through the runner, and writes a well-formed result.

The data is synthetic and written in the layout of /work/shared/data (pypi-minilm with its keyword query
sets and texts, pypi-minilm-tokens) under a temporary root passed as ``$NESTOR_DATA``, so the test needs
nothing outside the repository (as in test_bench_filtered.py). Each script runs in a subprocess of
``benchmarks/run_all.py --tiny --only NAME``: scripts pin native thread pools at import. What the tests check
is that a script still runs against today's engine and records the commit, the thread pools and the load,
not any number it measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.synth import exact_topk, split
from tests.synth_tokens import clustered_token_sets, maxsim_truth

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "benchmarks" / "run_all.py"
DIM = 384  # a few scripts describe MiniLM's 384 dimensions in their tables; the data keeps that shape
N_BASE, N_QUERIES, N_DOCS = 2000, 16, 300
WORDS = "vector search index python fast client server async http json parser image audio model data".split()

# Per script: extra arguments that keep CI within budget. What is left out still runs in `run_all.py --tiny`.
CI_ARGS = {
    "core": "--sections hnswlib,faiss,bare,nestor_ingest,nestor_rest,nestor_engine,nestor_ivfpq",
    "ingest": "--sections vector",  # text loads torch and MiniLM; rss starts six servers
}
# What each script must have measured (beyond finishing): its main table is not empty.
MEASURED = {
    "compression": lambda r: len(r["rows"]) >= 9 and len(r["baseline_rows"]) >= 4,
    "core": lambda r: {"hnswlib", "nestor_engine", "nestor_ivfpq"} <= set(r["sections"]),
    "filtered": lambda r: len(r["search"]) == 8,
    "ingest": lambda r: len(r["vector"]) == 3,
    "muvera": lambda r: r["muvera"]["search"] and r["ivfpq"] and r["rest"] and len(r["default"]["rows"]) == 3,
    "payload_index": lambda r: r["indexed"] and r["scan"],
    "probe": lambda r: len(r["round_cpu_seconds"]) == 2 and r["recall_at_10"] > 0.5,
    "ray": lambda r: len(r["rows"]) == 2 or "all" in r["meta"]["skipped"],
    "tenants": lambda r: len(r["rows"]) == 2,
    "compression_baselines": lambda r: len(r["rows"]) >= 4,
    # engine; IVF-PQ (best vs best, with faiss's two kernels; Nestor at faiss's setting when they differ);
    # LeanVec int8 and float32, rescaled or not, against raw hnswlib; REST batch (matrix and batch bodies); REST
    "head_to_head": lambda r: (
        [x["pair"].split(" ")[0] for x in r["rows"]][:1] == ["engine"]
        and 2 <= sum(x["pair"].startswith("IVF-PQ") for x in r["rows"]) <= 3
        and sum(x.get("leanvec") is not None for x in r["rows"]) == 4
        and sum(x["pair"].startswith("REST batch") for x in r["rows"]) == 2
        and len(r["rows"]) in (10, 11)
        and r["ivf_tuning"]["nestor"]["fastest"]
    ),
    "crash_rounds": lambda r: r["summary"]["rounds"] == 1 and r["summary"]["lost"] == 0,
    "load": lambda r: r["search"]["n"] > 0 and r["errors"] == 0,
}
KNOWN = [
    "compression",
    "core",
    "filtered",
    "ingest",
    "muvera",
    "payload_index",
    "probe",
    "ray",
    "tenants",
    "compression_baselines",
    "head_to_head",
    "crash_rounds",
    "load",
]


def _discover() -> dict[str, Path]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    found: dict[str, Path] = run_all.discover()
    return found


# Every script the runner finds is smoke-tested: one added on another branch joins without editing this file.
SCRIPTS = list(_discover())


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    dense = root / "pypi-minilm"
    dense.mkdir()
    base, queries = split(N_BASE, 2 * N_QUERIES, DIM, seed=5)
    queries, queries_kw = queries[:N_QUERIES], queries[N_QUERIES:]
    for name, x in (("base", base), ("queries", queries), ("queries_kw", queries_kw), ("sample_kw", queries_kw)):
        np.save(dense / f"{name}.npy", x.astype(np.float16))
    np.save(dense / "gt_ip.npy", exact_topk(_f16(base), _f16(queries), 100))
    np.save(dense / "gt_ip_kw.npy", exact_topk(_f16(base), _f16(queries_kw), 100))
    rng = np.random.default_rng(5)
    lines = [" ".join(rng.choice(WORDS, size=8)) for _ in range(N_BASE)]
    (dense / "base.txt").write_text("\n".join(lines) + "\n")

    tok = root / "pypi-minilm-tokens"
    tok.mkdir()
    docs, qs = clustered_token_sets(N_DOCS, N_QUERIES, DIM, seed=5)
    docs, qs = [_f16(d) for d in docs], [_f16(q) for q in qs]
    for prefix, sets in (("", docs), ("q_", qs)):
        np.save(tok / f"{prefix}tokens.npy", np.concatenate(sets).astype(np.float16))
        np.save(tok / f"{prefix}offsets.npy", np.cumsum([0] + [len(s) for s in sets]).astype(np.int64))
    np.save(tok / "gt_chamfer.npy", maxsim_truth(docs, qs, 100))
    return root


def run_runner(args: list[str], results: Path, data: Path | None, timeout: float = 300) -> dict[str, Any]:
    env = {**os.environ, "NESTOR_BENCH_LOAD_INTERVAL": "0.5"}
    if data is not None:
        env["NESTOR_DATA"] = str(data)
    cmd = [sys.executable, str(RUNNER), "--results", str(results), *args]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)
    summary: dict[str, Any] = json.loads((results / "run_all.json").read_text())
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-4000:])
    return summary


def head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()


# The scripts that talk HTTP must say which wire format each side used.
REST = {"core", "head_to_head", "load", "crash_rounds", "muvera", "ingest"}


def check_meta(meta: dict[str, Any], attempts: int = 1) -> None:
    assert meta["commit"] == head() and isinstance(meta["dirty"], bool)
    assert meta["tiny"] is True
    load = meta["load"]
    assert len(load["before"]) == 3 and load["during_1min"] and load["during_max"] >= min(load["during_1min"])
    assert "OPENBLAS_NUM_THREADS" in meta["threads"]["env"]  # every script runs under the engine's pools
    assert meta["runner"] and len(meta["runner_attempts"]) == attempts
    assert all(len(a["load_before"]) == 3 for a in meta["runner_attempts"])


# Scripts another test here already runs in full; their result's meta is checked there.
COVERED = {
    "filtered": "test_bench_filtered.py",
    "pipeline": "test_bench_pipeline.py",
    "qdrant_client": "test_bench_qdrant_client.py",
    "churn": "test_bench_churn.py",
    "quality": "test_bench_quality.py",
    "bm25": "test_bench_bm25.py",
    "hybrid": "test_bench_hybrid.py",
    "native": "test_bench_native.py",
    "overload": "test_bench_overload.py",
    "projection": "test_bench_projection.py",
    "concurrency": "test_bench_concurrency.py",
    "scale": "test_bench_scale.py",
    "scroll": "test_bench_scroll.py",
    "onecopy": "test_bench_onecopy.py",
    "catchup": "test_bench_catchup.py",
    "follow_mixed": "test_bench_follow_mixed.py",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", [s for s in SCRIPTS if s not in COVERED])
def test_script_runs_tiny(name: str, data_root: Path, tmp_path: Path) -> None:
    extra = [f"--args={name}={CI_ARGS[name]}"] if name in CI_ARGS else []
    summary = run_runner(["--tiny", "--only", name, *extra], tmp_path, data_root)
    section = summary["sections"][name]
    assert section["ok"] and len(section["attempts"]) == 1
    written = [tmp_path / p for p in section["attempts"][0]["written"] if p.endswith(".json")]
    assert written, section["attempts"][0]
    for path in written:
        result = json.loads(path.read_text())
        check_meta(result["meta"])
        assert result["meta"]["threads_pinned"], path  # what the script pinned, per side
        if name in REST:
            assert result["meta"]["wire_format"], path
        assert not result.get("errors"), result["errors"]
    main = json.loads(written[0].read_text()) if len(written) == 1 else None
    if main is not None and name in MEASURED:
        assert MEASURED[name](main), (name, {k: v for k, v in main.items() if k != "meta"})


def test_every_script_follows_the_convention() -> None:
    """run_all.py finds every script there is, and each takes ``main(argv)`` and ``--tiny``."""
    found = _discover()
    assert set(KNOWN) <= set(found), set(KNOWN) - set(found)
    for name, path in found.items():
        src = path.read_text()
        assert "def main(argv" in src and '"--tiny"' in src, name


FAKE = """
import sys
sys.path.insert(0, {bench!r})
from common import write_results

def main(argv=None):
    write_results({name!r}, {{"rows": [1]}})
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
"""


def test_runner_reruns_a_busy_section_and_stamps_every_result(tmp_path: Path) -> None:
    """A load threshold no machine is under (-1) makes every section busy: it runs 1 + --reruns times,
    each attempt reports its load, and the result file carries all the attempts."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("fake", "fake2"):
        (scripts / f"bench_{name}.py").write_text(FAKE.format(bench=str(REPO / "benchmarks"), name=name))
    results = tmp_path / "results"
    args = ["--dir", str(scripts), "--tiny", "--max-load", "-1", "--reruns", "2", "--wait", "0"]
    summary = run_runner(args, results, None, timeout=120)
    assert list(summary["sections"]) == ["fake", "fake2"]
    attempts = summary["sections"]["fake"]["attempts"]
    assert len(attempts) == 3 and all(a["returncode"] == 0 for a in attempts)
    assert all(len(a["load_before"]) == 3 and a["load_during_1min"] for a in attempts)
    assert attempts[-1]["written"] == ["fake.json"]
    assert summary["sections"]["fake2"]["attempts"][-1]["written"] == ["fake2.json"]  # not fake's stamped file
    assert "## fake2" in (results / "run_all.md").read_text()
    result = json.loads((results / "fake.json").read_text())
    assert result["rows"] == [1]
    check_meta(result["meta"], attempts=3)

    quiet = run_runner(["--dir", str(scripts), "--only", "fake", "--max-load", "1000"], tmp_path / "q", None)
    assert len(quiet["sections"]["fake"]["attempts"]) == 1  # under the threshold: no rerun


def test_runner_rejects_an_unknown_script(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(RUNNER), "--only", "nosuch", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode != 0 and "unknown scripts: nosuch" in run.stderr
