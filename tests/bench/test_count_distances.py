"""Smoke test of benchmarks/count_distances.py on small synthetic data: the replayed walks count what the
graphs really score (more at a wider beam, at least the beam itself), on Nestor's graphs and hnswlib's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "count_distances.py"


def test_count_distances_reads_every_graph(tmp_path: Path) -> None:
    dense = tmp_path / "pypi-minilm"
    dense.mkdir()
    base, queries = split(1500, 10, 32, seed=3)
    np.save(dense / "base.npy", base.astype(np.float16))
    np.save(dense / "queries.npy", queries.astype(np.float16))
    np.save(dense / "gt_ip.npy", exact_topk(base, queries, 100))
    args = ["--tiny", "--data", str(tmp_path), "--reuse", str(tmp_path / "work"), "--queries", "10"]
    out = subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True, text=True, timeout=300)
    table = [line for line in out.stdout.splitlines() if line.startswith("| ") and "ef" not in line]
    rows = {line.split("|")[1].strip(): line for line in table}
    assert set(rows) == {"nestor float32", "nestor int8 (its float32 twin)", "hnswlib float32"}
    for line in rows.values():
        at16, at48 = (float(x.replace(",", "")) for x in re.findall(r"\| ([\d,.]+)", line))
        assert 16 < at16 < at48 < 1500  # a walk scores more than its beam, more when wider, less than all
