"""Modules that share a piece import it from below, never from each other.

Reads the imports each module runs when it is loaded (top level, not the annotations-only
``if TYPE_CHECKING:`` block, not the imports inside functions; a package's ``__init__``, which
Python runs first, counts only where its own names are imported) and checks that the pairs
which once imported each other no longer sit on one cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mjvault

ROOT = Path(mjvault.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["mjvault", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _load_time_imports(path: Path, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import module` is an import of that module; of a package's own
            # names, one of the package (whose __init__ is a facade over its modules)
            subs = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [sub for sub in subs if sub in modules]
            if len(names) < len(subs):
                names.append(node.module)
        found |= {name for name in names if name in modules}
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: _load_time_imports(path, set(paths)) for name, path in paths.items()}


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def test_verify_loads_viewcheck_which_does_not_load_verify() -> None:
    graph = _graph()
    assert _reaches(graph, "mjvault.integrity.verify", "mjvault.integrity.viewcheck")
    assert not _reaches(graph, "mjvault.integrity.viewcheck", "mjvault.integrity.verify")


def test_the_search_engine_does_not_load_the_index_module() -> None:
    """The index loads the engine only when asked to search (start-up), so the engine
    importing the index's module would be the cycle; it takes the index's types for
    annotations only."""
    graph = _graph()
    assert not _reaches(graph, "mjvault.index.search", "mjvault.index.db")


def test_key_parts_and_problems_live_below_their_users() -> None:
    graph = _graph()
    assert "mjvault.index.keys" in graph["mjvault.index.search"]
    assert "mjvault.index.keys" in graph["mjvault.index.db"]
    assert "mjvault.integrity.problems" in graph["mjvault.integrity.viewcheck"]
    assert "mjvault.integrity.problems" in graph["mjvault.integrity.verify"]
