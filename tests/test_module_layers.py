"""Modules that share a piece import it from below, never from each other.

Reads the imports each module runs when it is loaded (top level, not the annotations-only
``if TYPE_CHECKING:`` block, not the imports inside functions; a package's ``__init__``, which
Python runs first, counts only where its own names are imported) and checks that the pairs
which once imported each other no longer sit on one cycle. The imports inside functions are
read too: one that closes a cycle hides it (docs/design.md, "Imports"), so none may, except
where laziness is the rule's own point: the command line's imports of the library (start-up
time) and the package's lazy ``mjvault.Vault``.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import mjvault

ROOT = Path(mjvault.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["mjvault", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _load_time_imports(path: Path, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for node in _parsed(path).body:
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


@functools.cache
def _paths() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


@functools.cache
def _load_graph() -> dict[str, frozenset[str]]:
    paths = _paths()
    return {name: frozenset(_load_time_imports(path, set(paths))) for name, path in paths.items()}


def _graph() -> dict[str, set[str]]:
    return {name: set(imports) for name, imports in _load_graph().items()}


def _deferred_imports(path: Path, modules: set[str]) -> set[str]:
    """The library modules imported inside functions (run later, when called), not under
    ``if TYPE_CHECKING:``: absolute (``from mjvault.x import y``) as the project writes them."""
    tree = _parsed(path)
    skipped = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(sub) for sub in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= (subs & modules) or {node.module}
    return found & modules


def _lazy_by_rule(name: str) -> bool:
    """Modules whose imports inside functions are lazy for start-up time by design."""
    return name == "mjvault" or name == "mjvault.cli" or name.startswith("mjvault.cli.")


@functools.cache
def _deferred_graph() -> dict[str, frozenset[str]]:
    paths = _paths()
    return {
        name: frozenset(_deferred_imports(path, set(paths)))
        for name, path in paths.items()
        if not _lazy_by_rule(name)
    }


def _full_graph() -> dict[str, set[str]]:
    graph = _graph()
    for name, imports in _deferred_graph().items():
        graph[name] |= imports
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing
    itself), by Tarjan's algorithm, iterative: each is a cycle of imports."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in order:
            continue
        work = [(start, iter(sorted(graph[start])))]
        order[start] = low[start] = len(order)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in order:
                    order[child] = low[child] = len(order)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], order[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == order[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return found


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


def test_no_cycle_among_the_library_modules() -> None:
    """Not at load time, and not hidden by an import inside a function either: a module
    that needs a piece of one that needs it takes the piece from a module below both."""
    assert _cycles(_graph()) == []
    assert _cycles(_full_graph()) == []


def test_a_cycle_hidden_inside_a_function_is_found() -> None:
    graph = _full_graph()
    assert "mjvault.writer" in graph["mjvault.vault"]  # the vault makes writers
    graph["mjvault.writer"] = graph["mjvault.writer"] | {"mjvault.vault"}
    assert ["mjvault.vault", "mjvault.writer"] in _cycles(graph)


def test_the_shared_pieces_live_below_the_modules_that_once_imported_each_other() -> None:
    graph = _full_graph()
    assert "mjvault.index.damage" in graph["mjvault.index.sealed"]
    assert not _reaches(graph, "mjvault.index.sealed", "mjvault.index.db")
    assert "mjvault.views.files" in graph["mjvault.views.state"]
    assert not _reaches(graph, "mjvault.views.state", "mjvault.views.registry")
    assert not _reaches(graph, "mjvault.writer", "mjvault.vault")


def _with_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Loading ``a.b.c`` loads ``a`` and ``a.b`` first."""
    out = {name: set(imports) for name, imports in graph.items()}
    for name, imports in out.items():
        parts = name.split(".")
        imports |= {".".join(parts[:n]) for n in range(1, len(parts))} & graph.keys()
    return out


def test_no_module_imports_inside_a_function_what_it_loads_anyway() -> None:
    """Such an import defers nothing: the module is loaded with its importer already. (The
    package's own names are left out: ``mjvault.Vault`` is loaded on first use.)"""
    graph = _with_packages(_graph())
    needless = []
    for name, deferred in _deferred_graph().items():
        loaded = {name}
        todo = [name]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in loaded:
                    loaded.add(nxt)
                    todo.append(nxt)
        needless += [f"{name} -> {target}" for target in deferred - {"mjvault"} if target in loaded]
    assert sorted(needless) == []
