"""Smoke test of benchmarks/bench_churn.py: one churn round on 1,500 synthetic points, the repair against
rebuild section and an 8-second soak, on data written in pypi-minilm's layout under a temporary `--data`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_churn.py"


@pytest.mark.slow
def test_bench_churn_runs(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "pypi-minilm"
    folder.mkdir(parents=True)
    base, queries = split(1500, 8, 32, seed=4)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries.npy", queries.astype(np.float16))
    np.save(folder / "gt_ip.npy", exact_topk(base, queries, 100))
    out = tmp_path / "churn.json"
    cmd = [sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--n", "1500", "--rounds", "1"]
    cmd += ["--queries", "8", "--out", str(out), "--sections", "churn,rebuild,soak", "--soak-seconds", "8"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| round" in run.stdout
    r = json.loads(out.read_text())
    ch = r["churn"]
    (row,) = ch["rounds_table"]
    assert row["live"] == 1500 - 75 and row["compactions"] >= 1 and row["dead_labels"] == 0
    assert row["recall"] >= 0.9 and 0 < row["p50_after"] <= row["p99_after"]
    assert ch["fresh"]["disk"] > 0 and 0.5 < ch["disk_ratio"] < 2.0
    assert ch["uptime_before"] and ch["uptime_during"]
    rb = r["rebuild"]
    assert rb["rebuild_recall"] >= 0.9 and rb["repair_s"] > 0 and rb["rebuild_s"] > 0
    sk = r["soak"]
    assert len(sk["samples"]) >= 1 and sk["samples"][0]["disk_mb"] > 0 and sk["samples"][0]["rss_mb"] > 0
    assert sk["latency_outside"]["n"] + sk["latency_in_compaction"]["n"] > 0


@pytest.mark.slow
def test_bench_churn_fresh_section_runs(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "pypi-minilm"
    folder.mkdir(parents=True)
    base, queries = split(1000, 8, 32, seed=5)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries.npy", queries.astype(np.float16))
    np.save(folder / "gt_ip.npy", exact_topk(base, queries, 100))
    out = tmp_path / "fresh.json"
    cmd = [sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--n", "1000", "--queries", "8"]
    cmd += ["--out", str(out), "--sections", "fresh"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    fr = json.loads(out.read_text())["fresh"]
    assert fr["n"] == 950 and fr["disk"] > 950 * 32 * 4 and fr["rss"] > 0 and fr["recall"] >= 0.9
