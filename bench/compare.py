"""Two or more builds of the service measured against each other in one session: the service of
every source tree runs at once (as bench/run.py runs it, on its own SQLite file), and each
round measures every scenario on every tree in turn, the order rotating from round to round,
so that a noisy machine's drift falls on all of them alike (`--store postgres`: each on a
fresh PostgreSQL database of its own); h2load and the services are pinned
to different cores where taskset works (bench/servers.py). Prints medians over the rounds, and
for every tree after the first the median of its per-round ratios to the first tree (requests/s
and CPU per request), which is the figure to trust on a shared machine.

    git worktree add /tmp/before main     # or: git archive main | tar -x -C /tmp/before
    .venv/bin/python -m bench.compare /tmp/before . [--rounds 6] [--requests 10000]
                                      [--scenarios grpc_noop introspect_seen] [--watch]
                                      [--store sqlite|postgres]

With `--watch`, a resource server watches each service's revocation feed (GET
/oauth/revocations, Server-Sent Events) throughout, as a deployment with resource servers
following revocations runs.

A tree is any checkout of this repository; its own server/ is what runs (bench/server.py is
started with the tree as its working directory), with this virtualenv's packages.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import statistics
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

import bench.run
import bench.servers
from bench.load import Measurement, Scenario, measure, metrics_ok_counter, pin_load
from bench.scenarios import scenarios as service_scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=list(bench.run.IN_FLIGHT))
    parser.add_argument("--scenarios", nargs="+", default=["grpc_noop", "introspect_seen"])
    parser.add_argument("--watch", action="store_true", help="a resource server watches the feed")
    parser.add_argument(
        "--store",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="postgres: each tree on a fresh database of its own (bench/run.py's server)",
    )
    args = parser.parse_args()
    bench.run.check_tools()
    pinning = bench.servers.choose_pinning(True)  # h2load on one core, the services on another
    pin_load(pinning.load_prefix)
    print(f"pinning: {pinning.describe()}", flush=True)
    trees = [tree.resolve() for tree in args.trees]
    results: dict[tuple[str, int, Path], list[Measurement]] = collections.defaultdict(list)
    with contextlib.ExitStack() as stack:
        services: dict[Path, tuple[bench.servers.Service, dict[str, Scenario]]] = {}
        for tree in trees:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="compare-")))
            bench.servers.ROOT = tree  # running_service starts bench/server.py in ROOT
            url = (
                stack.enter_context(bench.run.postgres_database())
                if args.store == "postgres"
                else f"sqlite+aiosqlite:///{workdir / 'tokens.db'}"
            )
            pin = tuple(pinning.server_prefix)
            service = stack.enter_context(bench.servers.running_service(url, workdir, pin=pin))
            services[tree] = (service, {s.name: s for s in service_scenarios(service)[0]})
            if args.watch:
                stack.enter_context(watching(service))
        for number in range(args.rounds):
            order = trees[number % len(trees) :] + trees[: number % len(trees)]
            for name in args.scenarios:
                for in_flight in args.in_flight:
                    for tree in order:
                        service, scenarios = services[tree]
                        base = (
                            service.grpc_url
                            if scenarios[name].protocol == "grpc"
                            else (service.http_url)
                        )
                        method = scenarios[name].grpc_method
                        results[(name, in_flight, tree)].append(
                            measure(
                                scenarios[name],
                                base_url=base,
                                pid=service.process.pid,
                                requests=args.requests,
                                in_flight=in_flight,
                                ok_count=(
                                    metrics_ok_counter(service.metrics_url, method)
                                    if method
                                    else None
                                ),
                            )
                        )
            print(f"round {number + 1} of {args.rounds} done", flush=True)
    print(
        "| scenario | in flight | tree | req/s | CPU us/req | p99 ms | failed "
        "| req/s ratio | CPU ratio |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for (name, in_flight, tree), runs in sorted(results.items(), key=lambda item: item[0][:2]):
        first = results[(name, in_flight, trees[0])]
        ratios = ("", "")
        if tree != trees[0]:
            pairs = list(zip(runs, first, strict=True))
            ratios = (
                f"{statistics.median(m.per_second / f.per_second for m, f in pairs):.3f}",
                f"{statistics.median(m.cpu_us / f.cpu_us for m, f in pairs):.3f}",
            )
        print(
            f"| {name} | {in_flight} | {tree} | "
            f"{statistics.median(m.per_second for m in runs):,.0f} | "
            f"{statistics.median(m.cpu_us for m in runs):.0f} | "
            f"{statistics.median(m.p99_ms for m in runs):.2f} | {sum(m.failed for m in runs)} | "
            f"{ratios[0]} | {ratios[1]} |"
        )


@contextlib.contextmanager
def watching(service: bench.servers.Service) -> Iterator[None]:
    """A resource server following `service`'s revocation feed, in a thread, until the end."""
    stop = threading.Event()
    opened = threading.Event()
    auth = (service.fixtures["service_id"], service.fixtures["service_secret"])

    def follow() -> None:
        url = f"{service.http_url}/oauth/revocations"
        with httpx.stream("GET", url, auth=auth, timeout=httpx.Timeout(10, read=60)) as response:
            response.raise_for_status()
            opened.set()
            for _ in response.iter_lines():
                if stop.is_set():
                    return

    thread = threading.Thread(target=follow, daemon=True, name="revocation-watcher")
    thread.start()
    if not opened.wait(10):
        raise RuntimeError("the revocation feed did not open")
    try:
        yield
    finally:
        stop.set()  # the daemon thread ends with the next line, or with the process


if __name__ == "__main__":
    main()
