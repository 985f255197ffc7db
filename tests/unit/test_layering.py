"""The import rules of docs/architecture.md, enforced: the import-linter contracts of pyproject.toml.

scripts/test runs `lint-imports` too; this test makes a plain pytest check the same contracts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ("server", "cluster", "index", "quantization", "encoders", "nestor_client")


def test_import_contracts() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"  # the test extra installs it next to python
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])}
    proc = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_quantization_imports_only_numpy() -> None:
    """The allow-list a forbidden contract cannot express: no third-party package but numpy, even a new one."""
    graph = grimp.build_graph(*ENGINE, include_external_packages=True, cache_dir=None)
    modules = graph.find_descendants("quantization") | {"quantization"}
    imported = {m.split(".")[0] for src in modules for m in graph.find_modules_directly_imported_by(src)}
    assert imported - set(sys.stdlib_module_names) - {"quantization"} == {"numpy"}
