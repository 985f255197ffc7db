"""kill -9 rounds under concurrent upsert and delete clients, on one data directory that carries over.

    .venv/bin/python benchmarks/crash_rounds.py --rounds 50 [--out benchmarks/results/crash_rounds.json]

Each round starts `nestor serve`, runs two upsert clients and two delete clients, kills the server
with SIGKILL at a random moment (0.5 to 2.5 s in), restarts it, and checks every id any round has
touched: acknowledged writes present with their last acknowledged version, acknowledged deletes
absent, and each unanswered batch all-or-nothing. The harness is `tests/e2e/test_crash_concurrent.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]

from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    harness,  # noqa: E402
    write_results,
)
from tests.e2e.test_crash_concurrent import Truth, run_round  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "crash_rounds.json")
    ap.add_argument("--tiny", action="store_true", help="one round: a smoke run")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    if args.tiny:
        args.rounds = 1
    truth = Truth()
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="nestor-crash-") as tmp:
        data = Path(tmp) / "data"
        for r in range(args.rounds):
            # Tiny: kill within the first second (the server is up by then, so acknowledged writes exist).
            window = {"min_kill": 0.3, "max_kill": 1.0} if args.tiny else {}
            res = run_round(data, r, truth, **window)
            rows.append(asdict(res))
            print(
                f"round {r + 1:2d}/{args.rounds}: kill at {res.kill_after:.2f}s, acked upserts {res.acked_upserts}, "
                f"acked deletes {res.acked_deletes}, checked {res.checked_present} present + {res.checked_absent} "
                f"absent, lost {res.lost}, resurrected {res.resurrected}, "
                f"torn {res.torn} of {res.unanswered} unanswered, errors {res.errors}",
                flush=True,
            )
    summary = {
        "rounds": args.rounds,
        "seconds": round(time.time() - started, 1),
        "acked_upserts": sum(r["acked_upserts"] for r in rows),
        "acked_deletes": sum(r["acked_deletes"] for r in rows),
        "checked_present_last": rows[-1]["checked_present"] if rows else 0,
        "checked_absent_last": rows[-1]["checked_absent"] if rows else 0,
        "lost": sum(r["lost"] for r in rows),
        "resurrected": sum(r["resurrected"] for r in rows),
        "torn": sum(r["torn"] for r in rows),
        "unanswered": sum(r["unanswered"] for r in rows),
        "errors": truth.errors,
    }
    print(json.dumps(summary, indent=1))
    meta = {
        "wire_format": "json (NestorClient)",
        "threads_pinned": "nestor serve defaults; 2 upserter and 2 deleter client threads",
    }
    write_results(args.out, {"summary": summary, "rounds": rows, "meta": meta})
    ok = summary["lost"] == 0 and summary["resurrected"] == 0 and summary["torn"] == 0 and not truth.errors
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
