"""The fuzz run as a program: `.venv/bin/python -m tests.fuzz.run --examples 60` (the long run, outside CI).

Prints one JSON object: the request count, every request's status (failed checks included), the
statuses per aimed collection, and every failure; exits 1 if there was any. CI runs it briefly in a
subprocess (tests/fuzz/test_fuzz.py), so schemathesis's recursion on the Filter schema cannot leave
the test process's interpreter in a bad state."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

from tests.fuzz.fuzzer import FuzzReport, run_fuzz


def summary(report: FuzzReport, seconds: float) -> dict[str, Any]:
    ok = sum(n for s, n in report.statuses.items() if 200 <= s < 300)
    return {
        "requests": report.requests,
        "counted": sum(report.statuses.values()),  # == requests: every status is counted
        "operations": len(report.by_operation),
        "seconds": round(seconds, 1),
        "statuses": {str(s): n for s, n in sorted(report.statuses.items())},
        "by_target": {t: {str(s): n for s, n in sorted(c.items())} for t, c in sorted(report.by_target.items())},
        "by_mode": {m: {str(s): n for s, n in sorted(c.items())} for m, c in sorted(report.by_mode.items())},
        "by_operation": {o: {str(s): n for s, n in sorted(c.items())} for o, c in sorted(report.by_op_status.items())},
        "success_share": round(ok / report.requests, 3) if report.requests else 0.0,
        "server_errors": sum(n for s, n in report.statuses.items() if s >= 500),
        "failures": report.failures,
        "generator_errors": report.generator_errors,  # schemathesis could not generate a case (not the app)
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=60, help="positive (schema-valid) cases per operation")
    ap.add_argument(
        "--negative-examples", type=int, default=None, help="invalid cases per operation (default: --examples)"
    )
    ap.add_argument("--seed", type=int, default=None, help="derandomise (default: a random run)")
    args = ap.parse_args()
    # As under pytest (pyproject's filterwarnings): a warning in the app is an error, so a 500 shows. A JSON
    # number past float32's range becomes inf with a RuntimeWarning; the vector is then refused (422).
    warnings.simplefilter("error")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="overflow encountered in cast", category=RuntimeWarning)
    started = time.time()
    report = run_fuzz(args.examples, seed=args.seed, negative_examples=args.negative_examples)
    sys.stdout.write(json.dumps(summary(report, time.time() - started), indent=1) + "\n")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
