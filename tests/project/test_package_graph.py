"""The package graph points one way: launcher/ (what starts the service) may import the bridge
(http_bridge/) and the core (server/); the bridge imports the core, never the launcher; the core
imports neither; token_validator/ (the resource servers' library) imports none of them. Read
from every module's source with `ast`, so that an import inside a function or an
`if TYPE_CHECKING:` block counts as much as one at the top.

And the standalone bridge, which needs no database and no secret, loads no SQLAlchemy, Alembic
or argon2: checked in a fresh interpreter, since this test process has loaded them all."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "http_bridge", "launcher", "token_validator")
# What each package must not import, not even inside a function. The bridge reaches the core
# through a TokenBackend (http_bridge/backend.py); the one that wraps the core's servicer is
# launcher/in_process.py, so the bridge needs none of the core's wiring either.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "server": ("http_bridge", "launcher"),
    "http_bridge": ("launcher", "server.app", "server.core", "server.servicer", "server.startup"),
    "launcher": (),
    # The resource servers' library stands on its own: the generated stubs and grpcio only.
    "token_validator": ("server", "http_bridge", "launcher"),
}
HEAVY = ("sqlalchemy", "alembic", "argon2")


def imported_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything `tree` imports from another package: for
    `from a import b` both `a` and `a.b` (b may be a submodule); `importlib.import_module`
    and `__import__` calls with a literal name too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                continue  # relative: within the module's own package
            base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else ""
            name = function.id if isinstance(function, ast.Name) else name
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield node.lineno, first.value


def violations(module: str, source: str) -> list[str]:
    """Every import of `module` (dotted name) that its package forbids, as "module:line name"."""
    forbidden = FORBIDDEN[module.split(".")[0]]
    found = []
    for line, name in imported_names(ast.parse(source)):
        if any(name == banned or name.startswith(banned + ".") for banned in forbidden):
            found.append(f"{module}:{line} imports {name}")
    return found


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def test_the_packages_import_one_way_only() -> None:
    checked = list(modules())
    assert len(checked) > 60, "the walk found too few modules: is ROOT right?"
    found = [v for module, path in checked for v in violations(module, path.read_text())]
    assert found == []


def test_the_check_sees_imports_anywhere_in_a_module() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import server.errors\n"
        "if TYPE_CHECKING:\n"
        "    from http_bridge.app import build_app\n"
        "def later():\n"
        "    import launcher.cli\n"
        "    from http_bridge import errors\n"
        "    importlib.import_module('http_bridge.server')\n"
    )
    assert violations("server.something", source) == [
        "server.something:4 imports http_bridge.app",
        "server.something:4 imports http_bridge.app.build_app",
        "server.something:6 imports launcher.cli",
        "server.something:7 imports http_bridge",
        "server.something:7 imports http_bridge.errors",
        "server.something:8 imports http_bridge.server",
    ]
    assert violations("http_bridge.app", "from server.core import Core\n") == [
        "http_bridge.app:1 imports server.core",
        "http_bridge.app:1 imports server.core.Core",
    ]
    assert violations("launcher.serve", "import http_bridge, server\n") == []
    assert violations("http_bridge.app", "from server import errors, settings\n") == []


# What `tokenservice bridge` does before it serves: the command's module and its parser, the
# standalone bridge's module, and the app it builds (a ChannelBackend behind build_app).
STANDALONE_BRIDGE = """
import json, sys
from launcher import cli, standalone_bridge
from http_bridge.app import build_app
from http_bridge.channel import ChannelBackend
from server.settings import Settings

args = cli.build_parser().parse_args(["bridge", "--grpc-target", "127.0.0.1:1"])
assert args.handler is cli.cmd_bridge
app = build_app(ChannelBackend(args.grpc_target), Settings.from_env())
assert callable(standalone_bridge.run_bridge) and app is not None
print(json.dumps(sorted(sys.modules)))
"""


def test_the_standalone_bridge_loads_no_database_or_password_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STANDALONE_BRIDGE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "http_bridge.app" in loaded and "launcher.standalone_bridge" in loaded
    heavy = [name for name in loaded if name.split(".")[0] in HEAVY]
    assert heavy == []
    # None of the core's wiring either: the store, its caches, the servicer, the passwords.
    core = {"server.core", "server.servicer", "server.passwords", "server.store.sql"}
    assert core.isdisjoint(loaded)


def handlers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, Callable[..., int]]]:
    """(command line, handler) of every command of `parser`, sub-commands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for words, handler in handlers(sub):
                    yield f"{name} {words}".strip(), handler
    handler = parser.get_default("handler")
    if handler is not None:
        yield "", handler


def test_every_command_the_parser_defers_exists_in_provisioning() -> None:
    """launcher/cli.py names its provisioning commands, to import them only when one runs: a
    misspelt or removed one would fail only when someone runs it."""
    from launcher import cli, provisioning

    found = dict(handlers(cli.build_parser()))
    assert found["serve"] is cli.cmd_serve and found["bridge"] is cli.cmd_bridge
    deferred = {words: h.__name__ for words, h in found.items() if words not in ("serve", "bridge")}
    assert len(deferred) == 23, sorted(deferred)
    missing = {
        w: name for w, name in deferred.items() if not callable(getattr(provisioning, name, None))
    }
    assert missing == {}
