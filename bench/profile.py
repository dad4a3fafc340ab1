"""`make profile`: where the service spends one scenario's time, before and after a change.

Starts the service as `make bench` does (bench/server.py on a fresh SQLite file, or PostgreSQL
with --database-url), pinned to one core with h2load on the other, drives one scenario
(bench/scenarios.py names) with h2load for the whole sampling, and samples the service with
py-spy: `--gil` samples only the thread holding the GIL (where Python time goes), `--native`
adds the C frames under each Python frame (grpcio's core, sqlite3, the socket writes). Prints
the frames that hold the most samples by themselves (self) and with their callees (total), as
bench/results.md quotes them, and keeps py-spy's raw stacks (collapsed format) beside them.

    .venv/bin/python -m bench.profile introspect_seen [--seconds 15] [--gil] [--native]
                                      [--database-url URL] [--top 25] [--output DIR]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.load import Scenario, h2load, pin_load
from bench.scenarios import scenarios
from bench.servers import choose_pinning, running_service

ROOT = Path(__file__).resolve().parent.parent
PY_SPY = Path(sys.executable).parent / "py-spy"


def frame_name(frame: str) -> str:
    """`function (path/to/module.py:line)` as py-spy writes it, shortened to `module.function`
    (the line dropped, so one function is one row)."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{function}" if path else function


def read_collapsed(path: Path) -> str:
    """py-spy's raw stacks; with --nonblocking it can read a frame name torn mid-character, which
    is replaced rather than failing the whole profile."""
    return path.read_text(errors="replace")


def summarise(collapsed: str, top: int) -> str:
    """The `top` frames of py-spy's collapsed stacks by self and by total samples, as
    percentages of all samples."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue  # a line of a frame name py-spy read torn (--nonblocking)
        n = int(count)
        samples += n
        frames = [frame_name(f) for f in stack.split(";") if f]
        own[frames[-1]] += n
        for name in set(frames):
            total[name] += n
    if samples == 0:
        return "no samples"

    def table(counter: collections.Counter[str], title: str) -> list[str]:
        rows = [f"| {title} | % of samples |", "|---|---:|"]
        rows += [f"| `{name}` | {100 * n / samples:.1f} |" for name, n in counter.most_common(top)]
        return rows

    return "\n".join(
        [f"{samples} samples", "", *table(own, "self"), "", *table(total, "total (with callees)")]
    )


def drive(scenario: Scenario, base_url: str, stop: threading.Event) -> None:
    """h2load at 10 in flight, batch after batch, until `stop`."""
    while not stop.is_set():
        h2load(scenario, base_url, 5000, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--gil", action="store_true")
    parser.add_argument("--native", action="store_true")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if not PY_SPY.exists():
        sys.exit(f"py-spy is a dev dependency ({PY_SPY}): make install")
    if shutil.which("h2load") is None:
        sys.exit("h2load is not installed: apt-get install nghttp2-client")
    pinning = choose_pinning(True)
    pin_load(pinning.load_prefix)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-profile-")))
        url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        service = stack.enter_context(
            running_service(url, workdir, pin=tuple(pinning.server_prefix))
        )
        listed, _ = scenarios(service)
        chosen = {s.name: s for s in listed}
        if args.scenario not in chosen:
            sys.exit(f"no scenario {args.scenario!r}; there are: {', '.join(sorted(chosen))}")
        scenario = chosen[args.scenario]
        base_url = service.grpc_url if scenario.protocol == "grpc" else service.http_url
        h2load(scenario, base_url, 2000, 10)  # warm-up
        stop = threading.Event()
        load = threading.Thread(target=drive, args=(scenario, base_url, stop))
        load.start()
        output = args.output or Path(tempfile.mkdtemp(prefix="profile-"))
        output.mkdir(parents=True, exist_ok=True)
        suffix = "".join(("-gil" if args.gil else "", "-native" if args.native else ""))
        collapsed = output / f"{args.scenario}{suffix}.txt"
        command = [str(PY_SPY), "record", "--format", "raw", "--rate", "250", "--nonblocking"]
        command += ["--duration", str(args.seconds), "--pid", str(service.process.pid)]
        command += ["--output", str(collapsed), *(["--gil"] if args.gil else [])]
        command += ["--native"] if args.native else []
        if args.native:
            command.remove("--nonblocking")  # native unwinding needs the process stopped
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=args.seconds + 60)
        finally:
            stop.set()
            load.join()
    print(f"# {args.scenario}{suffix}: py-spy {' '.join(command[1:2] + command[2:])}\n")
    print(summarise(read_collapsed(collapsed), args.top))
    print(f"\nraw stacks: {collapsed}")


if __name__ == "__main__":
    main()
