"""Check the core issue's bars against one results file of `bench_core.py`, printing every ratio.

    python benchmarks/bars.py benchmarks/results/core.json

Every comparison uses rows from the same run, so machine noise hits both sides alike.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def _rows(res: dict[str, Any], section: str, kind: str = "search") -> list[Row]:
    rows: list[Row] = res["sections"].get(section, {}).get(kind, [])
    return rows


def _find(rows: list[Row], **match: str) -> Row | None:
    for r in rows:
        if all(str(r.get(k, "")).startswith(v) for k, v in match.items()):
            return r
    return None


def _best_at(rows: list[Row], recall: float, key: str) -> Row | None:
    ok = [r for r in rows if r.get("recall", 0) >= recall and r.get(key)]
    return max(ok, key=lambda r: r[key]) if ok else None


def bars(res: dict[str, Any]) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    raw = _rows(res, "hnswlib")
    eng = [r for r in _rows(res, "nestor_engine") if r["variant"] == "in-process"]
    rest = _rows(res, "nestor_rest")

    best = max((r["recall"] for r in eng), default=0.0)
    out.append(("HNSW recall@10 >= 0.95 at some ef", f"best {best:.3f}", best >= 0.95))
    for r in eng:
        base = _find(raw, param=r["param"])
        if base:
            ratio = r["qps_single"] / base["qps_single"]
            out.append(
                (
                    f"engine single-query >= 0.8x raw hnswlib, {r['param']} (recall {r['recall']:.3f})",
                    f"{r['qps_single']:,.0f} / {base['qps_single']:,.0f} = {ratio:.2f}x",
                    ratio >= 0.8,
                )
            )
    for r in rest:
        if r["variant"].startswith("batch"):
            base = _find(raw, param=r["param"])
            if base:
                ratio = r["qps_batch"] / base["qps_batch"]
                out.append(
                    (
                        f"REST batch >= 0.5x raw hnswlib batch, {r['param']}",
                        f"{r['qps_batch']:,.0f} / {base['qps_batch']:,.0f} = {ratio:.2f}x",
                        ratio >= 0.5,
                    )
                )
    bare = _rows(res, "bare")
    for wire, label in (("json", "json"), ("msgpack", "msgpack")):
        b = _find(bare, variant=label)
        n = _find(rest, variant=f"single, {wire}", param="ef=64")
        if b and n:
            ratio = n["qps_single"] / b["qps_single"]
            out.append(
                (
                    f"REST single ({wire}) >= 0.9x bare FastAPI+hnswlib, ef=64",
                    f"{n['qps_single']:,.0f} / {b['qps_single']:,.0f} = {ratio:.2f}x",
                    ratio >= 0.9,
                )
            )
    pg = _rows(res, "pgvector")
    for p in pg:
        if "tcp" not in p["variant"]:
            continue
        mine = [r for r in rest if r["variant"] == "single, msgpack" and r["recall"] >= p["recall"] - 0.002]
        if mine:
            m = max(mine, key=lambda r: r["qps_single"])
            ratio = m["qps_single"] / p["qps_single"]
            out.append(
                (
                    f"REST msgpack beats pgvector at recall >= {p['recall']:.3f} ({p['param']})",
                    f"{m['qps_single']:,.0f} ({m['param']}) / {p['qps_single']:,.0f} = {ratio:.2f}x",
                    ratio > 1,
                )
            )
    ivf = _rows(res, "nestor_ivfpq")
    fs = [r for r in _rows(res, "faiss") if "fs" in r["variant"]]
    mine_ivf = _best_at(ivf, 0.95, "qps_single")
    for col, label in (("qps_single", "default threads"), ("qps_single_omp1", "omp=1")):
        theirs = _best_at(fs, 0.95, col)
        if mine_ivf and theirs:
            ratio = mine_ivf["qps_single"] / theirs[col]
            out.append(
                (
                    f"IVF-PQ at recall >= 0.95 vs faiss fast-scan+RFlat ({label})",
                    f"{mine_ivf['qps_single']:,.0f} ({mine_ivf['param']}, {mine_ivf['recall']:.3f}, "
                    f"{mine_ivf.get('code_bytes_per_vec')} B codes) / {theirs[col]:,.0f} "
                    f"({theirs['param']}, {theirs['recall']:.3f}) = {ratio:.2f}x",
                    ratio >= 1.0,
                )
            )
    build = _rows(res, "hnswlib", "build")
    ingest = _rows(res, "nestor_ingest", "build")
    if build and ingest:
        raw_rate = build[0]["rate_vps"]
        for r in ingest:
            ratio = r["rate_vps"] / raw_rate
            out.append(
                (
                    f"bulk upsert over REST >= 0.5x raw build rate: {r['variant']}",
                    f"{r['rate_vps']:,.0f} / {raw_rate:,.0f} = {ratio:.2f}x",
                    ratio >= 0.5,
                )
            )
    for r in _rows(res, "nestor_restart", "build"):
        out.append(
            (f"restart of the 100k HNSW collection < 10 s: {r['variant']}", f"{r['build_s']:.1f} s", r["build_s"] < 10)
        )
    return out


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("results") / "core.json")
    res = json.loads(path.read_text())
    print(f"command: {res['command']}\n")
    print("| bar | measured | pass |\n|---|---|---|")
    for name, measured, ok in bars(res):
        print(f"| {name} | {measured} | {'yes' if ok else '**no**'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
