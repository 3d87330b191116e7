"""docs/installation.md's extras table says what pyproject.toml's extras hold, so it cannot drift."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _extras() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        extra: {
            re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower() for requirement in reqs
        }
        for extra, reqs in project["optional-dependencies"].items()
    }


def _table() -> dict[str, str]:
    text = (ROOT / "docs" / "installation.md").read_text(encoding="utf-8")
    section = text.split("### Optional parts (extras)", 1)[1]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    return {name: adds.lower() for name, adds in rows}


def test_every_extra_is_in_the_table_with_each_package_it_adds() -> None:
    extras, table = _extras(), _table()
    assert sorted(table) == sorted(extras)
    for extra, packages in extras.items():
        missing = sorted(p for p in packages if p not in table[extra])
        assert not missing, f"docs/installation.md: extra {extra!r} does not name {missing}"
