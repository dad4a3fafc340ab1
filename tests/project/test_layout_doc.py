"""docs/layout.md matches the tree: every module of the service's packages has a row saying its
job, and no row names a path that is gone. The failure says which rows to add and which to
remove, so that a move of modules is a minute's fix of the document."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAYOUT = REPO_ROOT / "docs" / "layout.md"
# Top-level packages that are not the service's code, and so have one row each at most.
NOT_DOCUMENTED_PER_MODULE = {"tests", "bench"}
ROW = re.compile(r"^\| `([^`]+)` \| (.*) \|$")


def layout_rows(text: str) -> dict[str, str]:
    """{path: job} of every table row of the layout document whose first cell is a path."""
    rows = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            rows[match[1]] = match[2].strip()
    return rows


def service_packages(root: Path) -> list[Path]:
    """The top-level folders with an `__init__.py`, but the tests and the benchmark harness."""
    return sorted(
        folder
        for folder in root.iterdir()
        if (folder / "__init__.py").is_file() and folder.name not in NOT_DOCUMENTED_PER_MODULE
    )


def modules_to_document(root: Path) -> set[str]:
    """Every path that needs a row: each package (`name/`) and each module but `__init__.py`;
    a `migrations/` folder is one row, its contents none."""
    wanted = set()
    for package in service_packages(root):
        for path in sorted(package.rglob("*")):
            relative = path.relative_to(root)
            if "migrations" in relative.parts[:-1] or "__pycache__" in relative.parts:
                continue
            if path.is_dir() and ((path / "__init__.py").is_file() or path.name == "migrations"):
                wanted.add(f"{relative.as_posix()}/")
            elif path.suffix == ".py" and path.name != "__init__.py":
                wanted.add(relative.as_posix())
        wanted.add(f"{package.name}/")
    return wanted


def differences(root: Path, rows: dict[str, str]) -> tuple[list[str], list[str]]:
    """(rows to add, rows to remove): modules without a row, and rows that name no module of a
    service package or nothing that exists."""
    wanted = modules_to_document(root)
    packages = {f"{package.name}/" for package in service_packages(root)}
    to_add = sorted(wanted - set(rows))
    to_remove = []
    for path in rows:
        exists = (root / path).exists()
        in_package = any(path.startswith(package) for package in packages)
        documented_module = path in wanted or (exists and not path.endswith((".py", "/")))
        if not exists or (in_package and not documented_module):
            to_remove.append(path)
    return to_add, sorted(to_remove)


def test_the_layout_document_names_every_module_and_nothing_else() -> None:
    rows = layout_rows(LAYOUT.read_text())
    to_add, to_remove = differences(REPO_ROOT, rows)
    report = []
    if to_add:
        report.append("add a row (| `path` | job |) to docs/layout.md for:")
        report += [f"  + {path}" for path in to_add]
    if to_remove:
        report.append("remove the row from docs/layout.md for:")
        report += [f"  - {path}" for path in to_remove]
    assert not report, "\n".join(report)


def test_every_row_says_a_job() -> None:
    rows = layout_rows(LAYOUT.read_text())
    assert len(rows) > 50
    assert [path for path, job in rows.items() if len(job) < 10] == []


def test_a_moved_module_is_reported_by_name(tmp_path: Path) -> None:
    """The check can fail, and says what to do: a module moved into a new package shows up as
    the rows to add (the package and the module) and the row to remove."""
    for path in ("server/__init__.py", "server/app.py", "server/store/__init__.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    (tmp_path / "server/store/migrations/versions").mkdir(parents=True)
    (tmp_path / "server/store/migrations/versions/0001_initial.py").write_text("")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/__init__.py").write_text("")
    (tmp_path / "tests/test_x.py").write_text("")
    rows = {
        "server/": "the core",
        "server/app.py": "the gRPC server",
        "server/cli.py": "the command",
        "server/store/": "the store",
        "server/store/migrations/": "Alembic",
    }
    assert differences(tmp_path, rows) == ([], ["server/cli.py"])

    (tmp_path / "launcher").mkdir()
    (tmp_path / "launcher/__init__.py").write_text("")
    (tmp_path / "server/app.py").rename(tmp_path / "launcher/serve.py")
    assert differences(tmp_path, rows) == (
        ["launcher/", "launcher/serve.py"],
        ["server/app.py", "server/cli.py"],
    )
