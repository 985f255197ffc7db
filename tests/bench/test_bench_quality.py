"""Smoke test of benchmarks/bench_quality.py: a --tiny run of HNSW (and int8 HNSW, whose codes must train on
so few points) on 2,000 synthetic points in pypi-minilm's layout
(float16 base and queries, exact top-100) under a temporary `--data` root, in a subprocess; 500 more base rows are
in the reservoir first, as the users' queries calibration learns from; or (`--sample cv`) two-fold cross-validation
over the benchmark queries, each half calibrating for the other."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synth import exact_topk, split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_quality.py"


def test_folds_partition_the_queries() -> None:
    """Every split gives each query to exactly one fold; `random` folds are seeded and unlike the halves (which
    runs 5 and 6 used, and which stay reproducible), `interleaved` ones alternate."""
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for how in ("random", "interleaved", "halves"):
        for folds in (2, 3):
            held = bench._held(how, folds, 100, 0)
            assert len(held) == folds and sorted(np.concatenate(held).tolist()) == list(range(100))
            assert all(np.all(np.diff(h) > 0) for h in held)
    halves = bench._held("halves", 2, 100, 0)
    assert halves[0].tolist() == list(range(50))
    assert bench._held("interleaved", 2, 100, 0)[1].tolist() == list(range(1, 100, 2))
    a, b = bench._held("random", 2, 100, 0), bench._held("random", 2, 100, 1)
    assert a[0].tolist() == bench._held("random", 2, 100, 0)[0].tolist()  # seeded
    assert a[0].tolist() != b[0].tolist() and a[0].tolist() != halves[0].tolist()
    assert 15 <= int((a[0] < 50).sum()) <= 35  # a uniform sample: both halves of the queries in each fold


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sample", "index", "folds"),
    [("seen", "hnsw", None), ("cv", "hnsw", "random"), ("cv", "hnsw", "halves"), ("seen", "int8_hnsw", None)]
    + [("cv", "hnsw", "interleaved")],  # with --no-margin, the diagnostic
)
def test_bench_quality_runs(tmp_path: Path, sample: str, index: str, folds: str | None) -> None:
    folder = tmp_path / "data" / "pypi-minilm"
    folder.mkdir(parents=True)
    base, queries = split(3000, 100, 32, seed=4)
    np.save(folder / "base.npy", base.astype(np.float16))
    np.save(folder / "queries.npy", queries.astype(np.float16))
    gt = exact_topk(base.astype(np.float16).astype(np.float32), queries.astype(np.float16).astype(np.float32), 100)
    np.save(folder / "gt_ip.npy", gt)
    out = tmp_path / "quality.json"
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--data", str(tmp_path / "data"), "--index", index]
    cmd += ["--targets", "0.9", "--sample", sample, "--out", str(out)] + (["--split", folds] if folds else [])
    bare = folds == "interleaved"
    cmd += ["--no-margin"] if bare else []
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| index" in run.stdout and "best hand-tuned" in run.stdout
    r = json.loads(out.read_text())
    assert r["n"] == 2000 and r["queries"] == 100 and r["uptime_before"] and r["sample"] == sample
    (row,) = r["rows"]
    assert row["index"] == index and row["target"] == 0.9 and row["state"] == "met"
    assert r["bound"] == ("mean (--no-margin)" if bare else "one-sided 95 %")
    # no margin promises the target on the calibration queries only
    assert (row["calib_recall"] if bare else row["recall"]) >= 0.9
    assert row["qps"] > 0 and row["cpu_qps"] > 0 and row["chosen"].startswith("ef=")
    assert row["calib_source"] == "query sample"
    if sample == "cv":  # each half of the 100 benchmark queries calibrates for the other
        assert r["seen"] == 0 and row["folds"] == 2 and row["calib_queries"] == [50, 50]
        assert row["recall"] == pytest.approx(sum(row["fold_recall"]) / 2)
        assert r["split"] == folds and (r["split_seed"] == 0) == (folds == "random")
        assert len(row["fold_recall_fixed"]) == 2 and len(row["halves_recall_fixed"]) == 2
        assert [len(c) for c in row["hand_on_calib"]] == [2, 2]
        for (mean, low), fixed in zip(row["hand_on_calib"], row["fold_recall_fixed"][::-1], strict=True):
            assert low <= mean and mean == pytest.approx(fixed)  # two folds: one's calibration queries, the other
        if folds == "halves":  # the same folds: the same recall at the same setting
            assert row["fold_recall_fixed"] == row["halves_recall_fixed"]
    else:
        assert r["seen"] == 500 and row["folds"] == 1 and row["calib_queries"] == 500


def test_quality_folds_reads_a_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/quality_folds.py on a result whose hand-tuned setting found every neighbour but in the second
    half: the halves' gap is 0.2, larger than any random split's, and every calibration accepts a 0.5 target."""
    spec = importlib.util.spec_from_file_location("quality_folds", REPO / "benchmarks" / "quality_folds.py")
    assert spec is not None and spec.loader is not None
    folds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(folds)
    found = [10] * 100 + [8] * 100
    row = {"index": "hnsw", "target": 0.5, "hand": "ef=27", "hand_found": found}
    (tmp_path / "r.json").write_text(json.dumps({"rows": [row, {**row, "hand_found": []}]}))
    folds.main([str(tmp_path / "r.json"), "--splits", "50", "--cal", "100"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3  # the header, its rule, one row (a row without hand_found is skipped)
    assert "| hnsw | 0.5 | ef=27 | 0.9000 |" in out[2] and "0.2000 (larger in 0% of splits)" in out[2]
    assert out[2].endswith("| 1.00 / 1.00 |")
