"""Smoke test of benchmarks/bench_catchup.py: its --tiny run (400 synthetic points, 10 writes, 2 reloads)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_catchup.py"


@pytest.mark.slow
def test_bench_catchup_runs(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "pypi-minilm"
    folder.mkdir(parents=True)
    base, queries = split(2000, 16, 32, seed=5)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries.npy", queries.astype(np.float16))
    gt = exact_topk(base.astype(np.float16).astype(np.float32), queries.astype(np.float16).astype(np.float32), 100)
    np.save(folder / "gt_ip.npy", gt)
    out = tmp_path / "catchup.json"
    cmd = [sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--tiny", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["meta"]["tiny"] is True and result["meta"]["threads_pinned"]
    (r,) = result["runs"]
    assert r["n"] == 400 and r["writes"] == 10  # --tiny: the harness caps the points at 400
    assert r["catch_up"]["count"] == 8 and r["reload"]["count"] == 2  # every 5th write reloads whole
    assert r["follower_catch_ups"] == 8  # the plain writes caught up: no reload but the initial and forced ones
    assert r["follower_reloads"] == 1 + 2
    assert 0 < r["catch_up"]["median_ms"] and 0 < r["reload"]["median_ms"]
    assert out.with_suffix(".md").read_text().startswith("## Follower catch-up per write")
