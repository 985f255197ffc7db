"""Smoke test of benchmarks/bench_qdrant_client.py: the whole run on 600 synthetic points and 20 queries.

The data is written in pypi-minilm's layout under a temporary `--data` root, so the test needs no shared
data. The script runs in a subprocess (it starts its own server), as it would by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_qdrant_client.py"


@pytest.mark.e2e
def test_bench_qdrant_client_runs(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "pypi-minilm"
    folder.mkdir(parents=True)
    base, queries = split(600, 20, 16, seed=5)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries.npy", queries.astype(np.float16))
    gt = exact_topk(base.astype(np.float16).astype(np.float32), queries.astype(np.float16).astype(np.float32), 100)
    np.save(folder / "gt_ip.npy", gt)
    out = tmp_path / "out.json"
    cmd = [sys.executable, str(SCRIPT), "--n", "600", "--queries", "20", "--data", str(tmp_path / "data")]
    subprocess.run([*cmd, "--out", str(out)], check=True, cwd=REPO, timeout=300, capture_output=True)
    res = json.loads(out.read_text())
    rows = {r["client"]: r for r in res["rows"]}
    assert len(rows) == 4 and res["n"] == 600 and res["queries"] == 20
    for r in rows.values():  # every client got real answers: the same top-10 as the exact search, mostly
        assert r["recall@10"] > 0.8 and r["p50_ms"] > 0
    assert rows["nestor_client search"]["p50_vs_nestor"] == 1.0
