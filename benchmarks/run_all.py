"""Regenerate every benchmark table at the current commit, one script after another.

    .venv/bin/python benchmarks/run_all.py                         # everything, full size (hours)
    .venv/bin/python benchmarks/run_all.py --tiny                  # every script on tiny data (a CI smoke pass)
    .venv/bin/python benchmarks/run_all.py --only core,filtered    # a subset, by short name
    .venv/bin/python benchmarks/run_all.py --list                  # what would run

Each script is one *section*: it runs in its own process (the scripts pin native thread pools at import),
with the 1-minute load average sampled before it starts and every few seconds while it runs. When the load
before a section is above ``--max-load``, the section is run again after ``--wait`` seconds, up to
``--reruns`` times; the load is reported either way. Every result file a section writes gets the runner's
record of its attempts under ``meta.runner_attempts``, next to the script's own ``meta`` (commit, dirty
flag, thread pools, load), and the whole run is summarised in ``<results>/run_all.json``.

Which scripts run: every ``benchmarks/bench_*.py``, plus the scripts named in ``EXTRA`` below. A script
takes part by exposing ``main(argv)`` and accepting ``--tiny`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402

# Scripts outside the bench_*.py convention that also produce a table (short name -> file stem).
EXTRA = {
    "compression_baselines": "compression_baselines",
    "head_to_head": "head_to_head",
    "crash_rounds": "crash_rounds",
    "load": "load",
}


def discover(folder: Path = BENCH_DIR) -> dict[str, Path]:
    """Short name (``bench_`` stripped) -> script, in a stable order: bench_*.py sorted, then EXTRA."""
    found = {p.stem.removeprefix("bench_"): p for p in sorted(folder.glob("bench_*.py"))}
    for name, stem in EXTRA.items():
        path = folder / f"{stem}.py"
        if path.is_file():
            found[name] = path
    return found


def _sample(stop: threading.Event, out: list[float], interval: float) -> None:
    while not stop.wait(interval):
        out.append(os.getloadavg()[0])


def run_section(
    name: str, script: Path, extra: list[str], tiny: bool, results: Path, timeout: float | None
) -> dict[str, Any]:
    """One attempt: the script in a subprocess, the load before and during, the result files it wrote."""
    before = list(os.getloadavg())
    during: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(stop, during, 2.0), daemon=True)
    env = {**os.environ, "NESTOR_BENCH_RESULTS": str(results), "NESTOR_BENCH_RUNNER": name}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_DIR), str(REPO_DIR / "clients" / "python"), env.get("PYTHONPATH", "")) if p
    )
    if tiny:
        env["NESTOR_BENCH_TINY"] = "1"
    cmd = [sys.executable, str(script), *(["--tiny"] if tiny else []), *extra]
    logs = results / "logs"  # the script's output goes straight to files: `tail -f` them to follow a long run
    logs.mkdir(exist_ok=True)
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    before_files = _mtimes(results)
    t0 = time.perf_counter()
    sampler.start()
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO_DIR, env=env, stdout=out, stderr=err)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = -1
            err.write(f"\nrun_all: timed out after {timeout} s\n")
        finally:
            stop.set()
            sampler.join()
    during.append(os.getloadavg()[0])
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    # What this section wrote: files that are new or changed since it started (not the runner's own).
    after = _mtimes(results)
    written = sorted(str(p.relative_to(results)) for p, m in after.items() if before_files.get(p) != m)
    return {
        "section": name,
        "command": " ".join(
            [str(script.relative_to(REPO_DIR)) if script.is_relative_to(REPO_DIR) else str(script), *cmd[2:]]
        ),
        "returncode": rc,
        "seconds": round(time.perf_counter() - t0, 1),
        "load_before": before,
        "load_during_1min": during,
        "load_during_max": max(during),
        "written": written,
        "tables": tables(stdout),
        "stderr_tail": stderr[-4000:] if rc else "",
    }


def _mtimes(results: Path) -> dict[Path, int]:
    skip = {results / "run_all.json", results / "run_all.md"}
    return {
        p: p.stat().st_mtime_ns
        for p in results.rglob("*")
        if p.is_file() and p not in skip and (results / "logs") not in p.parents
    }


def tables(stdout: str) -> str:
    """The markdown a script printed: headings, tables and bar lines, without its progress messages."""
    keep: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(("|", "#", "- ", "**")):
            keep.append(line)
        elif keep and keep[-1] != "":
            keep.append("")
    return "\n".join(keep).strip() + "\n"


def report(summary: dict[str, Any]) -> str:
    """run_all.md: per section, the command, commit, load before and during, and the tables it printed."""
    meta = summary["meta"]
    dirty = " (dirty tree)" if meta["dirty"] else ""
    parts = [
        "# Benchmark run",
        "",
        f"Commit `{meta['commit']}`{dirty}, {meta['load']['cpu_count']} cores, tiny: {meta['tiny']}. "
        f"Load average (1 min) is sampled before each section and every 2 s while it runs.",
    ]
    for name, sec in summary["sections"].items():
        a = sec["attempts"][-1]
        parts += [
            "",
            f"## {name}",
            "",
            f"`python {a['command']}`: exit {a['returncode']}, {a['seconds']:.0f} s, load before "
            f"{a['load_before'][0]:.2f}, max during {a['load_during_max']:.2f}"
            + (f", {len(sec['attempts'])} attempts (busy machine)" if len(sec["attempts"]) > 1 else "")
            + f"; wrote {', '.join(a['written']) or 'nothing'}",
            "",
            a["tables"],
        ]
    return "\n".join(parts)


def stamp(results: Path, written: list[str], attempts: list[dict[str, Any]]) -> None:
    """Add the runner's attempts (load before and during each) to every JSON result the section wrote."""
    brief = [{k: a[k] for k in ("returncode", "seconds", "load_before", "load_during_max")} for a in attempts]
    for rel in written:
        path = results / rel
        if path.suffix != ".json":
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            data.setdefault("meta", {})["runner_attempts"] = brief
            path.write_text(json.dumps(data, indent=1) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated short names (default: all); see --list")
    ap.add_argument("--skip", default="", help="comma-separated short names to leave out")
    ap.add_argument("--tiny", action="store_true", help="tiny data, one pass: checks the scripts run, measures nothing")
    ap.add_argument("--list", action="store_true", help="print the discovered scripts and exit")
    ap.add_argument("--results", default=None, help="results directory (default benchmarks/results[/tiny])")
    ap.add_argument("--max-load", type=float, default=None, help="rerun a section whose load before exceeded this")
    ap.add_argument("--reruns", type=int, default=2, help="reruns at most, per section, when the load was high")
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait before a rerun")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per section attempt (default none)")
    ap.add_argument("--keep-going", action="store_true", help="run the rest after a section fails")
    ap.add_argument("--dir", default=str(BENCH_DIR), help=argparse.SUPPRESS)  # where scripts are found (tests)
    ap.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra arguments for one script, e.g. --args 'core=--n 20000 --queries 200' (repeatable)",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scripts = discover(Path(args.dir))
    if args.list:
        for name, path in scripts.items():
            print(f"{name:<24} {path.relative_to(REPO_DIR)}")
        return 0
    wanted = [s for s in args.only.split(",") if s] or list(scripts)
    unknown = (set(wanted) | {s for s in args.skip.split(",") if s}) - scripts.keys()
    if unknown:
        raise SystemExit(f"unknown scripts: {', '.join(sorted(unknown))}; known: {', '.join(scripts)}")
    chosen = [n for n in scripts if n in wanted and n not in args.skip.split(",")]
    extra: dict[str, list[str]] = {}
    for item in args.args:
        name, _, rest = item.partition("=")
        extra.setdefault(name, []).extend(rest.split())
    if args.tiny:
        harness.set_tiny(True)
    results = Path(args.results).resolve() if args.results else harness.results_dir()
    results.mkdir(parents=True, exist_ok=True)

    summary: dict[str, Any] = {
        "meta": harness.run_meta({"max_load": args.max_load, "reruns": args.reruns}),
        "sections": {},
    }
    failed: list[str] = []
    for name in chosen:
        attempts: list[dict[str, Any]] = []
        while True:
            print(f"== {name} (load {os.getloadavg()[0]:.2f})", flush=True)
            attempt = run_section(name, scripts[name], extra.get(name, []), args.tiny, results, args.timeout)
            attempts.append(attempt)
            busy = args.max_load is not None and attempt["load_before"][0] > args.max_load
            print(
                f"   {name}: rc {attempt['returncode']}, {attempt['seconds']:.0f} s, load before "
                f"{attempt['load_before'][0]:.2f}, max during {attempt['load_during_max']:.2f}"
                + (" (busy: rerun)" if busy and len(attempts) <= args.reruns else ""),
                flush=True,
            )
            if not busy or len(attempts) > args.reruns:
                break
            time.sleep(args.wait)
        last = attempts[-1]
        stamp(results, last["written"], attempts)
        summary["sections"][name] = {"attempts": attempts, "ok": last["returncode"] == 0}
        if last["returncode"] != 0:
            failed.append(name)
            print(last["stderr_tail"], file=sys.stderr, flush=True)
            if not args.keep_going:
                break
    summary["failed"] = failed
    (results / "run_all.json").write_text(json.dumps(summary, indent=1) + "\n")
    (results / "run_all.md").write_text(report(summary))
    print(f"wrote {results / 'run_all.json'} and run_all.md; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
