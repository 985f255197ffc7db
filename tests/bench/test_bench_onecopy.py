"""Smoke test of benchmarks/bench_onecopy.py: both sections on 2,000 synthetic points in pypi-minilm's
layout, this code standing in for the before tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_onecopy.py"


@pytest.mark.slow
def test_bench_onecopy_runs(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "pypi-minilm"
    folder.mkdir(parents=True)
    base, queries = split(2000, 20, 32, seed=5)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries.npy", queries.astype(np.float16))
    np.save(folder / "gt_ip.npy", exact_topk(base, queries, 100))
    out = tmp_path / "onecopy.json"
    cmd = [sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--n", "2000", "--passes", "2"]
    cmd += ["--out", str(out), "--before", str(REPO)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(out.read_text())
    sides = {row["side"]: row for row in r["memory"]}
    assert set(sides) == {"raw hnswlib", "nestor (one copy)", "nestor (before: two copies)"}
    hn, one = sides["raw hnswlib"], sides["nestor (one copy)"]
    assert hn["disk"] > 32 * 4 and one["disk"] > 32 * 4 and one["ram"] > 0
    assert one["info_ram_parts"]["codes"] == 0  # the graph holds no vectors of its own
    sp = r["speed"]
    assert len(sp["qps"]["before"]) == len(sp["qps"]["after"]) == 2 and min(sp["qps"]["after"]) > 0
    assert sp["recall"]["after"] == sp["recall"]["before"] >= 0.9  # the same graph, the same vectors
    assert sp["graph_memory"]["after"]["codes"] == 0 < sp["graph_memory"]["before"]["codes"]
