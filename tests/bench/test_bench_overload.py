"""benchmarks/overload.py runs end to end in tiny mode: a sustainable rate, a burst at 3x it, every answer a
200 or a 503, reads served, the store holding exactly the acknowledged points, and the RSS sampled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_overload_benchmark_runs_tiny(tmp_path: Path) -> None:
    out = tmp_path / "overload.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "overload.py"), "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    s = json.loads(out.read_text())["summary"]
    assert s["sustainable_batches_per_s"] > 0 and s["offered_batches"] >= 1
    assert s["errors"] == {} and s["read_errors"] == {} and s["reads"].get("200", 0) > 0
    assert s["count"] == s["count_expected"] > 0
    assert s["rss_samples"] > 0 and s["rss_max_mb"] > 0
