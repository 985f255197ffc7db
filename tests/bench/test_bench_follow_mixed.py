"""Smoke test of benchmarks/bench_follow_mixed.py: its --tiny run (400 synthetic points, the Python load
generator, one pass per writer rate and server)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_follow_mixed.py"


@pytest.mark.slow
def test_bench_follow_mixed_runs(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "pypi-minilm"
    folder.mkdir(parents=True)
    base, queries = split(2000, 16, 32, seed=6)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries.npy", queries.astype(np.float16))
    gt = exact_topk(base.astype(np.float16).astype(np.float32), queries.astype(np.float16).astype(np.float32), 100)
    np.save(folder / "gt_ip.npy", gt)
    out = tmp_path / "mixed.json"
    cmd = [sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--tiny", "--no-wrk", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["setup"]["n"] == 400 and r["meta"]["tiny"] is True
    assert r["meta"]["wire_format"] and r["meta"]["threads_pinned"]["load_generator"] == "python"
    rows = {(x["server"], x["writes_per_s"]): x for x in r["rows"]}
    assert set(rows) == {(s, w) for s in ("catch-up", "reload") for w in (0.0, 10.0)}
    for (_, rate), row in rows.items():
        assert row["rps_median"] > 0 and row["errors"] == 0
        assert (min(row["writes"]) > 0) == (rate > 0)  # the writer ran in the passes with writes, only there
    assert out.with_suffix(".md").read_text().startswith("## Searches/s at --processes 2")
