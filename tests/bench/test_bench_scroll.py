"""Smoke test of benchmarks/bench_scroll.py: its --tiny run (the first 400 of 2,000 synthetic points, one round)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_scroll.py"


@pytest.mark.slow
def test_bench_scroll_runs(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "pypi-minilm"
    folder.mkdir(parents=True)
    base, queries = split(2000, 8, 32, seed=3)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries.npy", queries.astype(np.float16))
    gt = exact_topk(base.astype(np.float16).astype(np.float32), queries.astype(np.float16).astype(np.float32), 100)
    np.save(folder / "gt_ip.npy", gt)
    out = tmp_path / "scroll.json"
    cmd = [sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--tiny"]
    run = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["n"] == 400 and len(r["rounds"]) == 1  # --tiny: the harness caps the points at 400, one round
    for row in r["rounds"]:
        assert row["get_points"] == row["scroll_points"] == 400  # both saw every point
        assert row["get_s"] > 0 and row["scroll_s"] > 0
    assert out.with_suffix(".md").read_text().startswith("## Scroll against get")
