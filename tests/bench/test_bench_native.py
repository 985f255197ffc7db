"""Smoke test of benchmarks/bench_native.py: every section (qdrant-edge, raw hnswlib, the fixed cost) on
small synthetic data in the shared data's layout, in a subprocess (the script pins the thread pools)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_native.py"


def test_bench_native_runs_every_section(tmp_path: Path) -> None:
    dense = tmp_path / "pypi-minilm"
    dense.mkdir()
    base, queries = split(1500, 20, 32, seed=3)
    np.save(dense / "base.npy", base.astype(np.float16))
    np.save(dense / "queries.npy", queries.astype(np.float16))
    np.save(dense / "gt_ip.npy", exact_topk(base, queries, 100))
    out = tmp_path / "out.json"
    args = ["--tiny", "--data", str(tmp_path), "--runs", "1", "--out", str(out), "--int8-efs", "24,32"]
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True, timeout=300)
    result = json.loads(out.read_text())
    run = result["runs"][0]
    assert run["int8"]["nestor_qps"] > 0 and run["int8"]["qdrant_qps"] > 0
    assert [row["ef"] for row in run["int8"]["rows"]] == [24, 32]  # the grid given, on both sides
    for row in run["int8"]["rows"]:
        assert row["nestor_recall"] > 0.5 and row["qdrant_recall"] > 0.5
    assert [row["ef"] for row in run["float"]["rows"]] == [16, 64]
    assert all(row["engine_recall"] > 0.5 and row["ratio"] > 0 for row in run["float"]["rows"])
    # the native path and the Python path give the same hits
    assert run["fixed"]["native_recall"] == run["fixed"]["python_recall"]
    assert set(result["verdict"]) >= {"int8", "float", "fixed", "lines"}
    assert result["meta"]["commit"]
    assert result["meta"]["threads_pinned"]
