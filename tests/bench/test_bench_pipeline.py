"""Smoke test of benchmarks/bench_pipeline.py: every section on small synthetic data in the shared data's
layout (pypi-minilm and pypi-minilm-tokens), in a subprocess (the script pins the thread pools at import)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.synth import exact_topk, split
from tests.synth_tokens import clustered_token_sets

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_pipeline.py"


def test_bench_pipeline_runs_and_both_forms_agree(tmp_path: Path) -> None:
    dense = tmp_path / "pypi-minilm"
    dense.mkdir()
    base, queries = split(1500, 8, 32, seed=3)
    np.save(dense / "base.npy", base.astype(np.float16))
    np.save(dense / "queries.npy", queries.astype(np.float16))
    np.save(dense / "gt_ip.npy", exact_topk(base, queries, 100))
    toks = tmp_path / "pypi-minilm-tokens"
    toks.mkdir()
    docs, qs = clustered_token_sets(300, 8, 16, seed=2)
    np.save(toks / "tokens.npy", np.concatenate(docs).astype(np.float16))
    np.save(toks / "offsets.npy", np.cumsum([0] + [len(d) for d in docs]))
    np.save(toks / "q_tokens.npy", np.concatenate(qs).astype(np.float16))
    np.save(toks / "q_offsets.npy", np.cumsum([0] + [len(q) for q in qs]))
    np.save(toks / "gt_chamfer.npy", np.zeros((8, 100), np.int32))  # recomputed: --mv-docs is below 300
    out = tmp_path / "out.json"
    args = ["--data", str(tmp_path), "--n", "1000", "--mv-docs", "250", "--queries", "8", "--rounds", "1"]
    subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(out)], check=True, capture_output=True, timeout=300
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["section"], r["form"]) for r in rows] == [
        *((s, f) for s in ("funnel", "muvera", "int8") for f in ("special", "pipeline")),
        *(("fusion", f) for f in ("search a", "search b", "a then b", "rrf(a, b)")),
        ("own", "special"),
        ("own", "pipeline"),
    ]
    own = rows[-2:]
    assert 0 < own[0]["own_us"] < own[1]["own_us"] and own[1]["own_over_special_us"] > 0, own
    for r in rows[:-2]:
        assert r["qps"] > 0 and r["cpu_ms"] > 0 and 0.5 <= r["recall"] <= 1.0, r
    assert all(r["same_ids"] == 1.0 for r in rows if r["section"] in ("funnel", "muvera")), rows
    assert rows[-3]["p50_over_sum"] > 0 and rows[-3]["cpu_min_over_both"] > 0
