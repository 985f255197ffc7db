"""Smoke test of benchmarks/bench_projection.py: a --tiny run on 2,000 synthetic points in pypi-minilm's layout
(float16 base, keyword queries and their sample, exact top-100) under a temporary `--data` root, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.synth import exact_topk
from tests.unit.quantization._lowrank import ood_split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_projection.py"


def test_bench_projection_runs(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "pypi-minilm"
    folder.mkdir(parents=True)
    base, sample, queries = ood_split(n_base=2000, n_sample=300, n_query=50, dim=32, seed=1)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries_kw.npy", queries.astype(np.float16))
    np.save(folder / "sample_kw.npy", sample.astype(np.float16))
    b32, q32 = base.astype(np.float16).astype(np.float32), queries.astype(np.float16).astype(np.float32)
    np.save(folder / "gt_ip_kw.npy", exact_topk(b32, q32, 100))
    out = tmp_path / "projection.json"
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--data", str(tmp_path / "data"), "--dims", "8"]
    cmd += ["--depths", "10", "40", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| dim" in run.stdout and "recall@10 in top 40" in run.stdout
    r = json.loads(out.read_text())
    assert r["n"] == 2000 and r["queries"] == 50 and r["sample"] == 300 and r["uptime_before"]
    by = {row["projection"].split(" (")[0]: row for row in r["rows"]}
    assert set(by) == {"LeanVec-ID", "LeanVec-ID rescaled", "LeanVec-OOD", "PCA-Matryoshka", "chosen"}
    # queries unlike the data: the chosen projection is query-aware and beats ID at every depth
    assert all(by["chosen"][c] > by["LeanVec-ID"][c] for c in ("c10", "c40"))
    assert by["chosen"]["held_out"] and by["chosen"]["choose_s"] > 0
