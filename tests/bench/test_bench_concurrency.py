"""bench_concurrency.py runs end to end on tiny data with the Python load generator (no wrk, no chroma in CI),
with the single-process servers and `nestor serve --processes 2`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import check_meta, data_root, run_runner  # noqa: F401 - data_root is a fixture


@pytest.mark.slow
def test_concurrency_bench_runs_tiny(data_root: Path, tmp_path: Path) -> None:  # noqa: F811
    summary = run_runner(
        ["--tiny", "--only", "concurrency", "--args=concurrency=--no-chroma --no-wrk"], tmp_path, data_root
    )
    assert summary["sections"]["concurrency"]["ok"]
    result = json.loads((tmp_path / "concurrency.json").read_text())
    check_meta(result["meta"])
    assert result["meta"]["wire_format"] and result["meta"]["threads_pinned"]["load_generator"] == "python"
    assert result["meta"]["skipped"] == ["chroma"]
    rows = {(r["server"], r["connections"]): r for r in result["rows"]}
    assert set(rows) == {(s, c) for s in ("nestor", "nestor inline", "nestor 2 procs") for c in (1, 4)}
    for row in rows.values():
        assert row["rps_median"] > 0 and row["errors"] == 0 and row["server_threads"] > 1
        assert row["server_cores"] > 0 and row["cpu_us_per_req"] > 0  # CPU read from /proc, children included
    assert result["setup"]["nestor"]["recall"] >= 0.9  # ef was tuned against real ground truth
    assert {p["generator"] for p in result["passes"]} == {"python"}
    assert "nestor 4 conn / 1 conn" in result["ratios"]
