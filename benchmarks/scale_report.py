"""The tables and the plot of bench_scale.py: one row per (scale, index type), from results/scale_*.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import harness
from common import BENCH_DIR, markdown_table

ORDER = {"hnsw": 0, "int8": 1, "ivfpq": 2, "binary": 3}
LABEL = {
    "hnsw": "HNSW m16 float32",
    "int8": "int8 HNSW m16 + rescore",
    "ivfpq": "IVF-PQ + rerank",
    "binary": "binary flat + rerank",
}
COLUMNS: list[tuple[str, str, str] | str] = [
    ("n", "N", ","),
    "index",
    "setting",
    ("recall", "recall@10", ".3f"),
    ("qps", "QPS (1 thread)", ",.0f"),
    ("p50", "p50 ms", ".2f"),
    ("p99", "p99 ms", ".2f"),
    ("qps_cpu", "QPS per CPU-second", ",.0f"),
    ("cpu_p50", "CPU ms p50", ".3f"),
    ("build", "build s", ",.0f"),
    ("build_cpu", "build CPU s", ",.0f"),
    ("ram", "RAM B/vec (info)", ",.0f"),
    ("rss", "RSS anon delta B/vec", ",.0f"),
    ("disk", "disk B/vec", ",.0f"),
    "load before / max during",
]


def row(c: dict[str, Any]) -> dict[str, Any]:
    s = c["search"]
    load = c["load"]
    return {
        "n": c["data"]["n"],
        "index": LABEL.get(c["kind"], c["kind"]),
        "setting": s["setting"] + ("" if s["reached"] else " (closest; < 0.95)"),
        "recall": s["recall"],
        "qps": s["qps"],
        "p50": s["p50_ms"],
        "p99": s["p99_ms"],
        "qps_cpu": s.get("qps_cpu"),
        "cpu_p50": s.get("cpu_ms_p50"),
        "build": c["build_s"],
        "build_cpu": c.get("build_cpu_s"),
        "ram": c["ram_bytes_per_vector"],
        "rss": c["rss_anon_delta_bytes_per_vector"],
        "disk": c["disk_bytes_per_vector"],
        "load before / max during": f"{load['before'][0]:.1f} / {load['during_max']:.1f}",
    }


def cells_table(cells: list[dict[str, Any]]) -> str:
    cells = sorted(cells, key=lambda c: (c["data"]["n"], ORDER.get(c["kind"], 9)))
    return markdown_table([row(c) for c in cells], COLUMNS)


def failed(errors: dict[str, str]) -> str:
    return "; failed: " + ", ".join(f"{k} ({v[:40]}...)" for k, v in errors.items()) if errors else ""


def load_cells(results: Path) -> tuple[list[dict[str, Any]], list[str]]:
    cells: list[dict[str, Any]] = []
    notes: list[str] = []
    for path in sorted(results.glob("scale_*.json")):
        r = json.loads(path.read_text())
        cells += r["cells"]
        meta = r["meta"]
        notes.append(
            f"{path.name}: commit {meta['commit'][:10]}{' (dirty)' if meta['dirty'] else ''}, "
            f"load at start {[round(x, 1) for x in meta['load']['before']]}, "
            f"max during {meta['load']['during_max']:.1f}" + failed(r["errors"])
        )
    return cells, notes


def plot(cells: list[dict[str, Any]], out: Path) -> Path | None:
    """QPS and RAM/disk bytes per vector against N, one line per index type (log-log)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind in sorted({c["kind"] for c in cells}, key=lambda k: ORDER.get(k, 9)):
        cs = sorted((c for c in cells if c["kind"] == kind), key=lambda c: c["data"]["n"])
        ns = [c["data"]["n"] for c in cs]
        line = a1.plot(ns, [c["search"]["qps"] for c in cs], "o-", label=LABEL.get(kind, kind))[0]
        short = [c for c in cs if not c["search"]["reached"]]  # timed at the closest setting: marked
        a1.plot([c["data"]["n"] for c in short], [c["search"]["qps"] for c in short], "kx", ms=10)
        a2.plot(ns, [c["ram_bytes_per_vector"] for c in cs], "o-", color=line.get_color(), label=f"{kind} RAM")
        a2.plot(ns, [c["disk_bytes_per_vector"] for c in cs], "s--", color=line.get_color(), label=f"{kind} disk")
    a1.set(xscale="log", yscale="log", xlabel="points (N)", ylabel="QPS, 1 thread, at recall@10 >= 0.95")
    a2.set(xscale="log", yscale="log", xlabel="points (N)", ylabel="bytes per vector")
    a1.set_title("Search throughput at recall 0.95 (x: not reached)")
    a2.set_title("RAM (info, solid) and disk (dashed) per vector")
    a1.legend(fontsize=8)
    a2.legend(fontsize=7, ncol=2)
    a1.grid(True, which="both", alpha=0.3)
    a2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def report(results: Path) -> str:
    """The merged table of every scale_*.json under `results`, and the plot (benchmarks/scale.png; under the
    results folder in tiny mode)."""
    cells, notes = load_cells(results)
    if not cells:
        return "no scale results yet"
    png = plot(cells, (results if harness.is_tiny() else BENCH_DIR) / "scale.png")
    lines = [cells_table(cells), "", *notes]
    lines.append(f"plot: {png}" if png else "plot: matplotlib is not installed")
    return "\n".join(lines)


if __name__ == "__main__":  # the table and the plot alone, e.g. from a venv that has matplotlib and no engine
    import sys

    print(report(Path(sys.argv[1]) if len(sys.argv) > 1 else harness.results_dir()))
