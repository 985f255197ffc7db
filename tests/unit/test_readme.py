"""The settings reference documents every setting, the README links to it, and names the test command CI runs."""

from __future__ import annotations

from pathlib import Path

from server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_DOC = "docs/reference/settings.md"


def test_every_setting_is_documented() -> None:
    doc = (ROOT / SETTINGS_DOC).read_text()
    missing = [f"NESTOR_{name.upper()}" for name in Settings.model_fields if f"NESTOR_{name.upper()}" not in doc]
    assert missing == []
    assert f"]({SETTINGS_DOC})" in (ROOT / "README.md").read_text()  # the README points newcomers there


def test_ci_runs_the_readme_test_command() -> None:
    assert "./scripts/test" in (ROOT / "README.md").read_text()
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()
