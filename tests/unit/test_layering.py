"""The import rules of DESIGN.md, enforced: only server/ knows HTTP, quantization/ is pure numpy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> top-level modules it must never import
FORBIDDEN = {
    "quantization": {"server", "index", "encoders", "fastapi", "starlette", "httpx", "hnswlib", "faiss", "torch"},
    "index": {"server", "encoders", "fastapi", "starlette", "uvicorn", "httpx", "cluster", "ray"},
    "cluster": {"server", "fastapi", "starlette", "uvicorn"},  # scale-out on Ray: imports index, never HTTP
    "encoders": {"server", "index", "quantization", "fastapi", "starlette"},
    "clients/python/nestor_client": {"server", "index", "quantization", "encoders", "fastapi", "faiss", "hnswlib"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", FORBIDDEN)
def test_layering(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    bad = {str(f.relative_to(ROOT)): sorted(_imports(f) & FORBIDDEN[package]) for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_no_pickle_anywhere() -> None:
    offenders = [
        str(f.relative_to(ROOT))
        for pkg in ("index", "quantization", "encoders", "server", "clients")
        for f in (ROOT / pkg).rglob("*.py")
        if "pickle" in _imports(f)
    ]
    assert offenders == []
