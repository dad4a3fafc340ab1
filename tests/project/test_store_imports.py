"""The store package's import graph: no cycle between its modules (not even one worked around
by an import inside a function), every module importable first in a fresh interpreter, and the
record types and the store interface importable without SQLAlchemy or Alembic."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "server" / "store"
PACKAGE = "server.store"


def store_modules() -> list[str]:
    """Every module of the package (the Alembic scripts in migrations/ are loaded by Alembic, not
    imported)."""
    names = [PACKAGE]
    names += [
        f"{PACKAGE}.{path.stem}" for path in sorted(STORE.glob("*.py")) if path.stem != "__init__"
    ]
    return names


def module_path(name: str) -> Path:
    if name == PACKAGE:
        return STORE / "__init__.py"
    return STORE / f"{name.rsplit('.', 1)[1]}.py"


def imported_store_modules(tree: ast.AST, known: set[str]) -> set[str]:
    """The package's modules that `tree` imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in known:
                found.add(node.module)
            # `from server.store import rows`
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in known
            )
    return found


def import_graph() -> dict[str, set[str]]:
    known = set(store_modules())
    return {
        name: imported_store_modules(ast.parse(module_path(name).read_text()), known) - {name}
        for name in known
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        if name in done:
            return None
        visiting.append(name)
        for target in sorted(graph[name]):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name)
        if cycle:
            return cycle
    return None


def test_the_store_modules_import_each_other_without_a_cycle() -> None:
    graph = import_graph()
    assert graph[f"{PACKAGE}.sql"], "the graph was read (sql.py imports the package's modules)"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


FIRST_PARTY = ("server", "http_bridge", "launcher", "tokenservice", "tests")


def imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return ["." * node.level + (node.module or "")]
    return [alias.name for alias in node.names]


def test_no_store_module_imports_its_own_code_inside_a_function() -> None:
    """An import of the service's own modules inside a function is how a cycle is hidden; the
    store needs none. A third-party package may be loaded when first needed (migrate.py loads
    alembic only when there is something to migrate)."""
    hidden = []
    for name in store_modules():
        tree = ast.parse(module_path(name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                hidden += [
                    f"{name}.{node.name}: {imported}"
                    for inner in ast.walk(node)
                    if isinstance(inner, ast.Import | ast.ImportFrom)
                    for imported in imported_names(inner)
                    if imported.startswith(".") or imported.split(".")[0] in FIRST_PARTY
                ]
    assert hidden == []


def fresh_import(module: str) -> set[str]:
    """Imports `module` first in a new interpreter; returns the top-level packages it loaded."""
    code = (
        f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("module", store_modules())
def test_each_store_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    fresh_import(module)


@pytest.mark.parametrize("module", [PACKAGE, "server.records", f"{PACKAGE}.protocol"])
def test_records_and_the_interface_load_no_database_library(module: str) -> None:
    loaded = fresh_import(module)
    assert loaded & {"sqlalchemy", "alembic", "asyncpg", "aiosqlite"} == set()
