"""docs/design.md's module table ("Shape of the package") names every package and top-level
module of mjvault, each in one row of its own, and nothing that is gone: a new module gets
its row with its one job, or this fails."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
PACKAGE = ROOT / "mjvault"
SECTION = "## Shape of the package"


def table_rows(text: str) -> list[tuple[str, str]]:
    """(first cell, second cell) of each body row of the section's first table."""
    section = text[text.index(SECTION) + len(SECTION) :]
    section = section[: section.index("\n## ")]
    rows: list[tuple[str, str]] = []
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines[0].replace(" ", "") == "|module|job|", lines[0]
    for line in lines[2:]:  # past the header and its |---| line
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 2, line
        rows.append((cells[0], cells[1]))
    return rows


def named(cell: str) -> str:
    """The one module or package a row's first cell names, as `mjvault/...` in backquotes."""
    names = re.findall(r"`([^`]+)`", cell)
    assert len(names) == 1 and cell == f"`{names[0]}`", f"one name per row: {cell!r}"
    return names[0]


def modules_and_packages() -> set[str]:
    """`mjvault/x.py` for every top-level module, `mjvault/a/` (and `mjvault/a/b/`) for every
    package below the top."""
    found = {f"mjvault/{path.name}" for path in PACKAGE.glob("*.py")}
    for init in PACKAGE.rglob("__init__.py"):
        folder = init.parent.relative_to(ROOT)
        if folder != Path("mjvault"):
            found.add(f"{folder.as_posix()}/")
    return found


def test_every_package_and_top_level_module_has_one_row() -> None:
    rows = table_rows(DESIGN.read_text(encoding="utf-8"))
    names = [named(cell) for cell, _ in rows]
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert not repeated, f"named in more than one row: {repeated}"
    expected = modules_and_packages()
    missing = sorted(expected - set(names))
    assert not missing, f"docs/design.md's module table lacks a row for {missing}"
    gone = sorted(set(names) - expected)
    assert not gone, f"docs/design.md's module table names what no longer exists: {gone}"


def test_every_row_says_its_job() -> None:
    for cell, job in table_rows(DESIGN.read_text(encoding="utf-8")):
        assert len(job.split()) >= 3, f"{cell}: say what it does"


def test_the_parser_sees_a_missing_row() -> None:
    # The check reads the table as written: a row taken out is a name missing.
    text = DESIGN.read_text(encoding="utf-8")
    without = "\n".join(
        line for line in text.splitlines() if not line.startswith("| `mjvault/lock.py`")
    )
    names = {named(cell) for cell, _ in table_rows(without)}
    assert modules_and_packages() - names == {"mjvault/lock.py"}
