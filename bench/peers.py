"""The peers `make bench` measures the service beside: node-oidc-provider and
django-oauth-toolkit, each installed at pinned versions (bench/peer_apps/) into a cache folder
outside the source tree and started as its own server process.

The cache folder is $TOKENSERVICE_BENCH_CACHE, else ~/.cache/tokenservice-bench; each install
lives in a folder named after a digest of its pin file, so a changed pin installs afresh and an
unchanged one is reused. `--peers install` installs what is missing (npm ci from the committed
package-lock.json; a virtualenv with pip from requirements.txt, every package pinned);
`--peers cached` uses only what is already there (what the test suite does, so that `make
test` never downloads); `--peers off` runs none. A peer that cannot be had (no Node.js, an
install that fails) is skipped with a notice, and the report says so.

    node-oidc-provider: `node server.mjs PORT CLIENT_ID` (secret in its environment), its
                        in-memory adapter
    django-oauth-toolkit: gunicorn gthread, 2 workers x 4 threads, SQLite (WAL), migrated and
                          provisioned afresh in the run's temporary folder
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

APPS = Path(__file__).resolve().parent / "peer_apps"
NODE_APP = APPS / "oidc_provider"
DOT_APP = APPS / "dot"


def cache_root() -> Path:
    configured = os.environ.get("TOKENSERVICE_BENCH_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "tokenservice-bench"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def node_dir() -> Path:
    return cache_root() / f"oidc-provider-{_digest(NODE_APP / 'package-lock.json')}"


def dot_dir() -> Path:
    return cache_root() / f"django-oauth-toolkit-{_digest(DOT_APP / 'requirements.txt')}"


def _ready(folder: Path) -> bool:
    return (folder / ".installed").exists()


class Unavailable(Exception):
    """A peer that cannot run here; the message says why (it goes into the report)."""


def _run(command: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise Unavailable(f"`{' '.join(command[:3])} ...` failed: {done.stderr.strip()[-500:]}")


def install_node(mode: str) -> Path:
    folder = node_dir()
    if _ready(folder):
        return folder
    if mode != "install":
        raise Unavailable(f"not installed in {folder} (make bench installs it)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise Unavailable("Node.js (node and npm) is not on PATH")
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(NODE_APP / name, folder / name)
    print(f"installing node-oidc-provider into {folder}", flush=True)
    _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder)
    (folder / ".installed").touch()
    return folder


def install_dot(mode: str) -> Path:
    folder = dot_dir()
    if _ready(folder):
        return folder
    if mode != "install":
        raise Unavailable(f"not installed in {folder} (make bench installs it)")
    print(f"installing django-oauth-toolkit into {folder}", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(folder / "venv")])
    pip = [str(folder / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "--no-deps", "-r", str(DOT_APP / "requirements.txt")])
    (folder / ".installed").touch()
    return folder


@dataclasses.dataclass
class Peer:
    """A running peer: its process, where it answers, and the credentials it was given."""

    name: str
    label: str
    process: subprocess.Popen[bytes]
    http_url: str
    token_path: str
    introspect_path: str
    clients: dict[str, dict[str, str]]  # "plain" (and "hashed" for DOT): client_id, secret
    versions: str


def _wait_http(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Unavailable(f"exited {process.returncode}: {log.read_text()[-1000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - loopback
            return
        except urllib.error.HTTPError:
            return  # it answers, if only with an error for a bare GET
        except OSError:
            time.sleep(0.1)
    raise Unavailable(f"not answering within 60 s: {log.read_text()[-1000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def node_oidc_provider(folder: Path, port: int, workdir: Path, pin: list[str]) -> Iterator[Peer]:
    client = {"client_id": "bench-client", "client_secret": secrets.token_urlsafe(32)}
    shutil.copyfile(NODE_APP / "server.mjs", folder / "server.mjs")
    log = workdir / "oidc-provider.log"
    version = json.loads((folder / "node_modules/oidc-provider/package.json").read_text())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*pin, "node", "server.mjs", str(port), client["client_id"]],
            cwd=folder,
            env={**os.environ, "BENCH_CLIENT_SECRET": client["client_secret"]},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(process, url + "/.well-known/openid-configuration", log)
        yield Peer(
            "oidc_provider",
            "node-oidc-provider",
            process,
            url,
            "/token",
            "/token/introspection",
            {"plain": client},
            f"oidc-provider {version['version']}, Node.js {node.stdout.strip()}",
        )
    finally:
        _stop(process)


@contextmanager
def django_oauth_toolkit(folder: Path, port: int, workdir: Path, pin: list[str]) -> Iterator[Peer]:
    python = folder / "venv" / "bin" / "python"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TOKENSERVICE", "DJANGO"))},
        "DOT_BENCH_DB": str(workdir / "dot.sqlite3"),
        "DOT_BENCH_SECRET_KEY": secrets.token_urlsafe(48),
        "PYTHONPATH": str(DOT_APP),
    }
    provisioned = subprocess.run(
        [str(python), "-m", "dot_bench.provision"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if provisioned.returncode != 0:
        raise Unavailable(f"provisioning failed: {provisioned.stderr[-1000:]}")
    clients = json.loads(provisioned.stdout)
    versions = subprocess.run(
        [
            str(python),
            "-c",
            "import django, oauth2_provider, gunicorn; print("
            "f'django-oauth-toolkit {oauth2_provider.__version__}, Django {django.__version__}, "
            "gunicorn {gunicorn.__version__}')",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    log = workdir / "dot.log"
    gunicorn = [
        str(folder / "venv" / "bin" / "gunicorn"),
        "--worker-class", "gthread", "--workers", "2", "--threads", "4",
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "dot_bench.wsgi",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*pin, *gunicorn], cwd=DOT_APP, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(process, url + "/o/token/", log)
        _wait_for_workers(process, 2)
        yield Peer(
            "dot",
            "django-oauth-toolkit",
            process,
            url,
            "/o/token/",
            "/o/introspect/",
            clients,
            versions + ", gthread 2 workers x 4 threads, SQLite WAL",
        )
    finally:
        _stop(process)


def _wait_for_workers(process: subprocess.Popen[bytes], count: int) -> None:
    """gunicorn answers from its first worker before the second has booted: wait for both, so
    that the CPU of every worker is counted from the start."""
    from bench.load import descendants

    deadline = time.monotonic() + 30
    while len(descendants(process.pid)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
