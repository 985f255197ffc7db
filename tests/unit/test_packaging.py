"""Every Python package of the repository is installed, so the `nestor` script can import it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = set()
    for top in ("index", "quantization", "encoders", "server", "cluster"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    client = ROOT / "clients" / "python"
    for init in (client / "nestor_client").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(client).parts))
    assert found == listed
