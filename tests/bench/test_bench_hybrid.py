"""Smoke test of benchmarks/bench_hybrid.py: the whole run on 300 synthetic summaries and 30 names.

The data is written in pypi-minilm's layout (`base.txt`, `base.npy`, `names.txt`, `names.npy`,
`qrels_names.npy`) under a temporary `--data` root. Each name is two rare words of its summary (BM25 finds
it) and its vector is near its summary's half the time (dense finds those), so fusion must beat both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_hybrid.py"


def test_bench_hybrid_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    common = ["python", "library", "tool", "fast", "simple", "client", "data", "web"]
    n, dim = 300, 16
    base = rng.standard_normal((n, dim)).astype(np.float32)
    docs, names, qvec, qrels = [], [], [], []
    for i in range(n):
        rare = [f"w{i}x{j}" for j in range(2)]
        words = [*rng.choice(common, 4).tolist(), *rare]
        docs.append(" ".join(words))
        if i % 10 == 0:
            # half the names share no word with their summary (dense only), half have a random vector (bm25 only)
            lexical = (i // 10) % 2 == 0
            names.append(" ".join(rare) if lexical else "zzz qqq")
            qvec.append(rng.standard_normal(dim) if lexical else base[i] + 0.05 * rng.standard_normal(dim))
            qrels.append(i)
    folder = tmp_path / "pypi-minilm"
    folder.mkdir()
    (folder / "base.txt").write_text("\n".join(docs) + "\n")
    (folder / "names.txt").write_text("\n".join(names) + "\n")
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "names.npy", np.array(qvec, np.float16))
    np.save(folder / "qrels_names.npy", np.array(qrels, np.int32))
    out = tmp_path / "hybrid.json"
    cmd = [sys.executable, str(SCRIPT), "--data", str(tmp_path), "--repeats", "1", "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=REPO, timeout=300)
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"dense", "bm25", "rrf k=60", "rrf k=2", "dbsf", "dense, limit 100", "bm25, limit 100"}
    assert 0.4 < res["dense"]["mrr@10"] < 0.6 and 0.4 < res["bm25"]["mrr@10"] < 0.6
    for fused in ("rrf k=60", "rrf k=2"):
        assert res[fused]["recall@10"] > 0.95 and res[fused]["p50_vs_parts"] > 0
    # DBSF: a BM25 list of one match normalises to 0.5, below a dense list's best; it still beats either alone
    assert res["dbsf"]["mrr@10"] > max(res["dense"]["mrr@10"], res["bm25"]["mrr@10"])
