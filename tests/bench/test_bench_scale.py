"""benchmarks/bench_scale.py and its data (scale_data.py): the generator, the cached exact truth, the tie-aware
recall, and the whole script in tiny mode on synthetic data in pypi-minilm's layout (400 points, x10 for 1m)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_scale.py"
sys.path.insert(0, str(REPO / "benchmarks"))
import scale_data  # noqa: E402

sys.path.pop(0)


def test_scaled_copies_are_unit_norm_seeded_and_apart_from_their_original() -> None:
    base, _ = split(300, 1, 64, seed=1)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    x = scale_data.scaled(base, 3)
    assert x.shape == (900, 64)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(x, scale_data.scaled(base, 3)) and not np.array_equal(x, scale_data.scaled(base, 3, seed=2))
    cos = np.einsum("nd,nd->n", x[300:600], base)  # copy 1 of point i against point i
    assert 0.6 < cos.mean() < 0.8  # noise of norm 1: cosine ~0.71, as far as a real neighbour
    assert scale_data.scaled(base, 1) is base


def test_cached_truth_is_exact_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NESTOR_BENCH_CACHE", str(tmp_path))
    base, queries = split(500, 7, 32, seed=4)
    ids, scores, computed = scale_data.cached_truth(base, queries, 20, "t")
    assert computed and ids.shape == (7, 20) and scores.shape == (7, 20)
    assert np.array_equal(ids[:, :10], exact_topk(base, queries, 10))
    assert np.allclose(scores, np.take_along_axis(queries @ base.T, ids, axis=1), atol=1e-5)
    again = scale_data.cached_truth(base, queries, 20, "t")
    assert not again[2] and np.array_equal(again[0], ids)
    vecs, path = scale_data.cached_scaled(base, 2, "t")
    assert path is not None and path.parent == tmp_path and vecs.shape == (1000, 32)
    assert np.array_equal(np.asarray(vecs), scale_data.scaled(base, 2))


def test_recall_with_ties_counts_a_tied_duplicate_and_nothing_below() -> None:
    base, queries = split(200, 3, 16, seed=6)
    base = np.vstack([base, base[:50]])  # ids 200..249 duplicate 0..49
    truth = exact_topk(base, queries, 10)
    kth = np.take_along_axis(queries @ base.T, truth, axis=1)[:, 9]
    assert scale_data.recall_with_ties(truth.tolist(), kth, base, queries, 10) == 1.0
    swapped = [[(i + 200 if i < 50 else i) for i in row] for row in truth.tolist()]  # the duplicates instead
    assert scale_data.recall_with_ties(swapped, kth, base, queries, 10) == 1.0
    worst = np.argsort(queries @ base.T, axis=1)[:, :10]  # the ten farthest points
    assert scale_data.recall_with_ties(worst.tolist(), kth, base, queries, 10) == 0.0
    half = [row[:5] for row in truth.tolist()]
    assert scale_data.recall_with_ties(half, kth, base, queries, 10) == 0.5


@pytest.mark.slow
def test_bench_scale_runs_tiny(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "pypi-minilm"
    folder.mkdir(parents=True)
    base, queries = split(400, 5, 384, seed=3)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries.npy", queries.astype(np.float16))
    np.save(folder / "gt_ip.npy", exact_topk(base.astype(np.float16).astype(np.float32), queries, 100))
    env = {
        **os.environ,
        "NESTOR_BENCH_CACHE": str(tmp_path / "cache"),
        "NESTOR_BENCH_RESULTS": str(tmp_path / "results"),
    }
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--data", str(tmp_path / "data")]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| index " in run.stdout and "recall@10 |" in run.stdout
    for scale, n in (("100k", 400), ("1m", 4000)):
        r = json.loads((tmp_path / "results" / f"scale_{scale}.json").read_text())
        assert not r["errors"] and [c["kind"] for c in r["cells"]] == ["hnsw", "int8", "ivfpq", "binary"]
        for c in r["cells"]:
            assert c["data"]["n"] == n and c["data"]["copies"] == (10 if scale == "1m" else 1)
            assert c["build_s"] > 0 and c["upsert_s"] <= c["build_s"]
            # float32 vectors alone are 1,536 bytes: every index type keeps them for the rescore
            assert c["ram_bytes_per_vector"] > 1536 and c["disk_bytes_per_vector"] > 1536, c
            assert c["memory"] and c["index_info"]["indexed"] >= n
            s = c["search"]
            assert 0 < s["recall"] <= 1 and s["qps"] > 0 and 0 < s["p50_ms"] <= s["p99_ms"]
            assert s["qps_cpu"] > 0 and 0 < s["cpu_ms_p50"] <= s["cpu_ms_p99"] and c["build_cpu_s"] > 0
            assert len(s["sweep"]) == 1 and s["reached"] == (s["sweep"][0]["recall"] >= 0.95)
            assert c["load"]["before"] and c["load"]["during_1min"]
        assert r["meta"]["threads_pinned"]["build_threads"] == 1 and r["meta"]["tiny"] is True
    assert list((tmp_path / "cache").glob("*_x10_*.npy"))  # the 1m vectors were cached, not in the repo
