"""Smoke test of benchmarks/bench_filtered.py: the whole run on 2,000 synthetic points and a few queries.

The data is written in pypi-minilm's layout (float16 base and queries, exact top-100) under a temporary
`--data` root, so the test needs no shared data. The script runs in a subprocess: it pins the native
thread pools at import. Without qdrant-edge (the bench extra) it measures Nestor alone, and so does this.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_filtered.py"
HAS_QDRANT = importlib.util.find_spec("qdrant_edge") is not None


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    folder = root / "pypi-minilm"
    folder.mkdir()
    base, queries = split(2000, 8, 32, seed=3)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries.npy", queries.astype(np.float16))
    gt = exact_topk(base.astype(np.float16).astype(np.float32), queries.astype(np.float16).astype(np.float32), 100)
    np.save(folder / "gt_ip.npy", gt)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(("scale", "n", "points"), [("100k", None, 2000), ("1m", 200, 2000)])
def test_bench_filtered_runs(data_root: Path, tmp_path: Path, scale: str, n: int | None, points: int) -> None:
    out = tmp_path / "filtered.json"
    cmd = [sys.executable, str(SCRIPT), "--data", str(data_root), "--queries", "5", "--scale", scale]
    cmd += ["--out", str(out), "--build-threads", "1"] + ([] if n is None else ["--n", str(n)])
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| filter" in run.stdout and "bytes per point" in run.stdout
    assert out.with_suffix(".md").read_text().startswith("## Filtered search")

    r = json.loads(out.read_text())
    assert (r["n"], r["queries"], r["scale"]) == (points, 5, scale)
    engines = ["nestor", "qdrant-edge"] if HAS_QDRANT else ["nestor"]
    assert list(r["build_s"]) == engines
    assert len(r["search"]) == 8  # unfiltered and seven filters
    for name, sec in r["search"].items():
        assert 0 < sec["matching"] <= 1, name
        assert sec["load_before"] and sec["load_during_1min"], name
        for e in engines:
            side = sec[e]
            assert side["reached"] and side["recall"] >= 0.95, (name, e, side["sweep"])
            assert side["qps"] > 0 and 0 < side["p50_ms"] <= side["p99_ms"], (name, e)
        assert sec["nestor"]["strategies"], name
    far, near = r["search"]["far from queries: zone == far"], r["search"]["none (unfiltered)"]
    assert far["truth_mean_score"] < near["truth_mean_score"]  # the far filter's matches lie away from the queries
    assert set(r["count"]) == set(r["search"]) - {"none (unfiltered)"}
    assert r["scroll"]["get_points"] == points
    assert "error" not in r["scroll"], r["scroll"]  # Collection.scroll takes a shape scroll_all does not know
    assert "scroll_s" in r["scroll"] or "skipped" in r["scroll"]
    assert set(r["payload_index_memory"]) == {"tenant", "cat", "year", "tags", "zone"}
    assert r["threads"]["env"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    meta = r["meta"]  # what common.write_results records for every benchmark (see test_bench_smoke.py)
    assert meta["commit"] == head and isinstance(meta["dirty"], bool) and meta["threads_pinned"]
    assert len(meta["load"]["before"]) == 3 and meta["load"]["during_1min"]
