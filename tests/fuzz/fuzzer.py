"""Schemathesis over every operation of `/openapi.json`, in-process, against a real app with data.

Each operation gets positive cases (valid by the schema) and negative ones (invalid on purpose), by
default as many. Cases on a collection aim at a realistic one (`fuzz384`: dimension 384, named vectors,
payload indexes, seeded points; tests/fuzz/targets.py) four times in five (positive) or in two (negative),
else at a tiny one (`fuzz`, dimension 4), or (negative only) keep their generated name. Three positive
cases in four get a body that fits their target (`fit_body`: vector sizes, the one-of rules the schema
cannot state, ids, limits) and, on a snapshot route, the name of an existing snapshot. Targets are recreated
whenever a case deletes them, so cases reach the engine instead of stopping at a 404. Most carry the
admin key; some the read key or none, so the auth answers are fuzzed too. A case fails on a 5xx, on a
response that does not match the documented schema (the envelope, see `server/openapi.py`), or on a
wrong content type.

Every request's status is counted, whether or not its checks pass, so a 5xx shows in `statuses`
as well as in `failures`. An exception out of the app counts as a 500. `run_fuzz` collects failures
instead of stopping at the first, so one run reports every operation. CI runs it in a subprocess
(tests/fuzz/test_fuzz.py): schemathesis can recurse without end on the recursive Filter schema, and a
RecursionError caught in-process leaves the interpreter unfit for later tests.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure, Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi

from server.app import create_app
from server.auth import hash_key
from server.settings import Settings
from tests.fuzz.targets import DIMS, REAL, SMALL, SMALL_DIM, ensure_snapshot, ensure_targets, fit_body

KEYS = {"admin": "fuzz-admin-key", "read": "fuzz-read-key"}
# Where a case on a collection goes. "": its generated name (a 404, or a 422 for an invalid name); positive
# cases always reach a collection, so that a valid request is answered by the engine, not by the 404.
AIMS = {GenerationMode.POSITIVE: [REAL, REAL, REAL, REAL, SMALL], GenerationMode.NEGATIVE: [REAL, REAL, SMALL, ""]}
# The key a case carries: mostly admin; the read key and none, so the auth answers are fuzzed too (more
# often on negative cases: a positive one is there to reach the engine).
WHO = {GenerationMode.POSITIVE: ["admin"] * 10 + ["read", ""], GenerationMode.NEGATIVE: ["admin"] * 6 + ["read", ""]}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@dataclass
class FuzzReport:
    requests: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)  # every request's, failed checks included
    by_target: dict[str, Counter[int]] = field(default_factory=dict)  # the same, per aimed collection
    by_mode: dict[str, Counter[int]] = field(default_factory=dict)  # ... per generation mode
    by_op_status: dict[str, Counter[int]] = field(default_factory=dict)  # ... and per operation
    failures: list[str] = field(default_factory=list)
    generator_errors: list[str] = field(default_factory=list)  # schemathesis failed to generate, not the app


def run_fuzz(
    examples: int, data_dir: Path | None = None, seed: int | None = 0, negative_examples: int | None = None
) -> FuzzReport:
    """`examples` positive cases per operation and `negative_examples` negative ones (default: as many);
    returns the counts and every failure."""
    tmp = tempfile.TemporaryDirectory(prefix="nestor-fuzz-") if data_dir is None else None
    root = Path(tmp.name) if tmp is not None else data_dir
    assert root is not None
    entries = f"admin:{hash_key(KEYS['admin'])},read:{hash_key(KEYS['read'])}"
    app = create_app(Settings(data_dir=root / "data", api_keys=entries, max_search_limit=1000))
    report = FuzzReport()
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for result in schema.get_all_operations():
            op = result.ok()  # type: ignore[union-attr]  # an Err (a broken schema) fails here
            _fuzz_operation(app, op, GenerationMode.POSITIVE, examples, seed, report)
            negative = examples if negative_examples is None else negative_examples
            if negative:
                _fuzz_operation(app, op, GenerationMode.NEGATIVE, negative, seed, report)
    finally:
        asgi.shutdown_lifespans()  # closes the catalog the lifespan opened
        if tmp is not None:
            tmp.cleanup()
    return report


def _fuzz_operation(
    app: Any, op: Any, mode: GenerationMode, examples: int, seed: int | None, report: FuzzReport
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is not None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=op.as_strategy(generation_mode=mode),
        aim=st.sampled_from(AIMS[mode]),
        raw=st.integers(0, 3),  # 0 (what Hypothesis draws most) fits the body; 3 leaves it as generated
        who=st.sampled_from(WHO[mode]),
    )
    def one(case: Any, aim: str, raw: int, who: str) -> None:
        ensure_targets(app)
        target = aim if aim and "name" in (case.path_parameters or {}) else ""
        if target:
            case.path_parameters["name"] = target
        if target and raw < 3 and mode is GenerationMode.POSITIVE:  # most cases: a body that fits the target
            case.body = fit_body(case.body, op.path, DIMS[""] if target == REAL else SMALL_DIM)
            snapshot = ensure_snapshot(app) if target == REAL else None
            if snapshot is not None and "snapshot" in (case.path_parameters or {}):  # one that exists
                case.path_parameters["snapshot"] = snapshot
            if snapshot is not None and op.path.endswith("/snapshots/restore") and isinstance(case.body, dict):
                case.body |= {"snapshot": snapshot, "source": REAL}
        # Both headers: schemathesis generates its own bearer token for the documented security schemes.
        headers = {"api-key": KEYS[who], "authorization": f"Bearer {KEYS[who]}"} if who else {}
        report.requests += 1
        report.by_operation[op.label] += 1
        statuses = report.by_target.setdefault(target or "other", Counter())
        per_mode = report.by_mode.setdefault(mode.value, Counter())
        per_op = report.by_op_status.setdefault(op.label, Counter())
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # an exception out of the app: what a client sees is a 500
            report.statuses[500] += 1
            statuses[500] += 1
            per_mode[500] += 1
            per_op[500] += 1
            report.failures.append(f"{op.label} [{mode.value}]: the app raised {exc!r}"[:300])
            return
        report.statuses[response.status_code] += 1  # counted before the checks, so failures show here too
        statuses[response.status_code] += 1
        per_mode[response.status_code] += 1
        per_op[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except BaseException as exc:  # noqa: BLE001 - a failed check (a BaseExceptionGroup): record it, go on
            if isinstance(exc, KeyboardInterrupt):
                raise
            first = str(exc).strip().splitlines()
            report.failures.append(f"{op.label} [{mode.value}]: {first[0] if first else type(exc).__name__}")

    try:
        one()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # nothing to make invalid (no parameters, no body): the positive cases covered it
    except (RecursionError, FlakyFailure) as exc:
        # schemathesis 4.32 can recurse without end while it mutates the recursive Filter schema for a
        # negative case (in its own `_build`, before any request). Not the app's failure: note it and go on.
        if mode is GenerationMode.POSITIVE or not _generator_recursion(exc):
            raise
        report.generator_errors.append(f"{op.label} [{mode.value}]: RecursionError while generating a case")


def _generator_recursion(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RecursionError):
            return True
        if isinstance(seen, BaseExceptionGroup) and any(_generator_recursion(e) for e in seen.exceptions):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
