"""The long fuzz run, outside CI: `.venv/bin/python -m tests.fuzz.run --examples 60`.

Prints the request count, the statuses seen, and every failure; exits 1 if there was any."""

from __future__ import annotations

import argparse
import json
import sys
import time

from tests.fuzz.fuzzer import run_fuzz


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=60, help="cases per operation and generation mode")
    ap.add_argument("--seed", type=int, default=None, help="derandomise (default: a random run)")
    args = ap.parse_args()
    started = time.time()
    report = run_fuzz(args.examples, seed=args.seed)
    out = {
        "requests": report.requests,
        "operations": len(report.by_operation),
        "seconds": round(time.time() - started, 1),
        "statuses": dict(sorted(report.statuses.items())),
        "server_errors": sum(n for s, n in report.statuses.items() if s >= 500),
        "failures": report.failures,
        "generator_errors": report.generator_errors,  # schemathesis could not generate a case (not the app)
    }
    sys.stdout.write(json.dumps(out, indent=1) + "\n")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
