"""The pre-commit hooks are the checks `make lint typecheck` and CI run, with the same tools: ruff
check, ruff format and mypy, each run from this virtualenv (the versions constraints.txt pins)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_hooks_run_ruff_ruff_format_and_mypy_from_the_virtualenv() -> None:
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert set(hooks) == {"ruff-check", "ruff-format", "mypy"}
    commands = {name: hook["entry"].split() for name, hook in hooks.items()}
    assert commands["ruff-check"][:3] == [".venv/bin/ruff", "check", "--fix"]
    assert commands["ruff-format"][:2] == [".venv/bin/ruff", "format"]
    assert commands["mypy"] == [".venv/bin/mypy"]  # pyproject's [tool.mypy] files, all of them
    assert hooks["mypy"]["pass_filenames"] is False
    for name, hook in hooks.items():
        assert hook["language"] == "system", name
        assert (REPO_ROOT / commands[name][0]).is_file(), f"{name}: run `make install`"
    # ruff check --fix before ruff format, as ruff advises.
    assert list(hooks).index("ruff-check") < list(hooks).index("ruff-format")
