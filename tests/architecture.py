"""The project's modules and the imports between them, read from the source (nothing is imported): what the
architecture tests and the image test follow.

    python -c "from tests.architecture import modules; print(sorted(modules()))"
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "access", "inference", "storage", "serve", "views", "training", "tools")


def modules() -> dict[str, Path]:
    """Every project module by dotted name: the root's entry points, the packages' modules, and the tests."""
    found = {path.stem: path for path in ROOT.glob("*.py")}
    for package in (*PACKAGES, "tests"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(path: Path) -> Iterator[str]:
    """Every module name an import statement in the file mentions, at any depth (inside functions too), with
    `from package import module` giving package.module as well."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def statements(path: Path) -> Iterator[str]:
    """The module each import statement in the file loads, at any depth (`from a import b`: a)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def project_imports(name: str, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (a package's __init__ counts as the package)."""
    return {imported for imported in imported_names(known[name]) if imported in known and imported != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: project_imports(name, known) for name in known}


def closure(start: set[str], edges: dict[str, set[str]]) -> set[str]:
    """`start` and everything it imports, directly or not."""
    seen: set[str] = set()
    frontier = set(start)
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        frontier |= edges.get(name, set()) - seen
        if "." in name:  # importing a package's module runs the package's __init__ first
            frontier.add(name.rsplit(".", 1)[0])
    return seen


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the path that closes it (depth-first search)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(edges.get(name, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt) :] + [nxt] if nxt in path else [name, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    return found


def long_functions(path: Path, limit: int) -> list[str]:
    """Functions (methods too) longer than `limit` lines, as "file:line name (n lines)"."""
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return long
