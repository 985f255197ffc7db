"""Smoke test of benchmarks/bench_bm25.py: the whole run on 400 synthetic summaries and 40 names.

The data is written in pypi-minilm's layout (`base.txt`, `names.txt`, `qrels_names.npy`) under a temporary
`--data` root. Each name is two rare words of its summary, so both engines must find most of them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_bm25.py"


@pytest.mark.skipif(importlib.util.find_spec("bm25s") is None, reason="bm25s is in the bench extra")
def test_bench_bm25_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    common = ["python", "library", "tool", "fast", "simple", "client", "data", "web"]
    docs, names, qrels = [], [], []
    for i in range(400):
        rare = [f"w{i}x{j}" for j in range(2)]
        words = [*rng.choice(common, 4).tolist(), *rare]
        rng.shuffle(words)
        docs.append(" ".join(words))
        if i % 10 == 0:
            names.append(" ".join(rare))
            qrels.append(i)
    folder = tmp_path / "pypi-minilm"
    folder.mkdir()
    (folder / "base.txt").write_text("\n".join(docs) + "\n")
    (folder / "names.txt").write_text("\n".join(names) + "\n")
    np.save(folder / "qrels_names.npy", np.array(qrels, np.int32))
    out = tmp_path / "bm25.json"
    subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path), "--out", str(out)], check=True, cwd=REPO)
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"bm25s", "bm25s (get_scores + top-k)", "nestor", "nestor (qdrant defaults)"}
    for row in res.values():
        assert row["mrr@10"] > 0.9 and row["qps"] > 0
    assert res["nestor"]["mrr@10"] == pytest.approx(res["bm25s (get_scores + top-k)"]["mrr@10"], abs=0.01)
