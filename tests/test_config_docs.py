"""docs/configuration.md must say what the schema says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mjvault.config.reference import render_reference
from mjvault.config.schema import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"


def test_reference_matches_the_schema() -> None:
    assert DOC.read_text(encoding="utf-8") == render_reference(), (
        "docs/configuration.md is out of date: run scripts/gen_config_docs.py"
    )


def test_every_setting_and_variable_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for key, spec in SETTINGS.items():
        assert f"### `{key}`" in text
        for name in spec.env:
            assert f"`{name}`" in text


def test_generator_check_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
