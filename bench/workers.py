"""Requests per second of `tokenservice serve` with one and with two worker processes.

On a fresh PostgreSQL database of its own (created here, dropped at the end), for each worker
count: start `tokenservice serve --workers N` (gRPC only), issue one anonymous token, then run
`--runs` measurements of `--seconds` each, in which `--clients` client processes (spawned, each
with `--connections` gRPC connections of its own so that SO_REUSEPORT spreads them over the
workers, and `--concurrency` calls in flight) call IntrospectToken in a loop. A run's figure is
successful calls / seconds, beside the CPU time of the whole `serve` process tree (supervisor
and workers) per call and the req/s per core that follows from it (10^6 / CPU us per call);
the figures printed for N are medians of the runs. Nothing is asserted: this is a measurement,
not a test.

    .venv/bin/python -m bench.workers [--workers 1 2] [--clients 4] [--seconds 5] [--runs 3]

PostgreSQL: TOKENSERVICE_BENCH_POSTGRES_URL (default: the local server, user postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from bench.load import tree_cpu_seconds
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

TOKENSERVICE = Path(sys.executable).parent / "tokenservice"
SERVER_URL = os.environ.get(
    "TOKENSERVICE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TENANT = "bench"
START_DELAY_SECONDS = 1.5  # lets every spawned client connect before the clock starts


# --- the clients (each in a spawned process) ----------------------------------------------------


def client_process(
    target: str, token: str, connections: int, concurrency: int, start_at: float, stop_at: float
) -> tuple[int, int]:
    """Calls IntrospectToken from `start_at` to `stop_at` (wall clock); (successes, failures)."""
    return asyncio.run(_client(target, token, connections, concurrency, start_at, stop_at))


async def _client(
    target: str, token: str, connections: int, concurrency: int, start_at: float, stop_at: float
) -> tuple[int, int]:
    options = [("grpc.use_local_subchannel_pool", 1)]  # a TCP connection per channel
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(connections)]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), timeout=10)
        stubs = [pb_grpc.TokenServiceStub(channel) for channel in channels]
        request = pb.IntrospectTokenRequest(token=token)
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def loop(stub: pb_grpc.TokenServiceStub) -> tuple[int, int]:
            ok = failed = 0
            while time.time() < stop_at:
                try:
                    answer = await stub.IntrospectToken(request, timeout=10)
                except grpc.aio.AioRpcError:
                    failed += 1
                    continue
                if answer.active:
                    ok += 1
                else:
                    failed += 1
            return ok, failed

        results = await asyncio.gather(*(loop(stubs[i % connections]) for i in range(concurrency)))
        return sum(ok for ok, _ in results), sum(failed for _, failed in results)
    finally:
        for channel in channels:
            await channel.close()


# --- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(TOKENSERVICE), *args], env=env, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"tokenservice {' '.join(args)}: {done.stderr}")
    return done.stdout


def wait_until_serving(
    process: subprocess.Popen[bytes], target: str, log: Path, workers: int
) -> None:
    """Health SERVING on the port, and every worker logged that it serves."""
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{log.read_text()}")
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
            except grpc.RpcError:
                status = None
            started = log.read_text().count("tokenservice: gRPC on")
            if status == health_pb2.HealthCheckResponse.SERVING and started >= workers:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"not serving after 60 s:\n{log.read_text()}")
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def measure(
    env: dict[str, str], workers: int, storefront_id: str, args: argparse.Namespace, logs: Path
) -> list[tuple[float, float]]:
    """Starts `serve --workers N`, runs the measurements, stops it; per run, requests per
    second and the server's CPU microseconds per successful call."""
    target = env["TOKENSERVICE_GRPC_ADDR"]
    log = logs / f"workers-{workers}.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [str(TOKENSERVICE), "serve", "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_until_serving(process, target, log, workers)
        with grpc.insecure_channel(target) as channel:
            token = (
                pb_grpc.TokenServiceStub(channel)
                .IssueToken(
                    pb.IssueTokenRequest(
                        anonymous=pb.AnonymousGrant(tenant=TENANT, client_id=storefront_id)
                    )
                )
                .access_token
            )
        spawn = multiprocessing.get_context("spawn")
        rates = []
        with concurrent.futures.ProcessPoolExecutor(args.clients, mp_context=spawn) as pool:
            for run in range(1, args.runs + 1):
                start_at = time.time() + START_DELAY_SECONDS
                stop_at = start_at + args.seconds
                futures = [
                    pool.submit(
                        client_process,
                        target,
                        token,
                        args.connections,
                        args.concurrency,
                        start_at,
                        stop_at,
                    )
                    for _ in range(args.clients)
                ]
                time.sleep(max(0.0, start_at - time.time()))
                cpu_before = tree_cpu_seconds(process.pid)
                results = [future.result() for future in futures]
                cpu_us = (tree_cpu_seconds(process.pid) - cpu_before) * 1e6
                ok = sum(r[0] for r in results)
                failed = sum(r[1] for r in results)
                rate = ok / args.seconds
                per_call = cpu_us / ok if ok else float("nan")
                rates.append((rate, per_call))
                print(
                    f"  workers={workers} run {run}: {rate:8.0f} req/s, {per_call:5.0f} us CPU "
                    f"per call ({1e6 / per_call:6.0f} req/s per core)  ({ok} calls, {failed} "
                    "failed)",
                    flush=True,
                )
    finally:
        code = stop(process)
    if code != 0:
        print(f"  (the server exited {code}; log: {log})", flush=True)
    return rates


# --- the database -------------------------------------------------------------------------------


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def admin(statement: str) -> None:
    connection = await asyncpg.connect(dsn(SERVER_URL), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--connections", type=int, default=4, help="connections per client")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight per client")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    database = f"tokenservice_bench_{secrets.token_hex(4)}"
    asyncio.run(admin(f'CREATE DATABASE "{database}"'))
    try:
        url = make_url(SERVER_URL).set(database=database).render_as_string(hide_password=False)
        env = {name: value for name, value in os.environ.items() if not name.startswith("TOKEN")}
        env.update(
            TOKENSERVICE_DATABASE_URL=url,
            TOKENSERVICE_SECRET_KEY=secrets.token_urlsafe(48),
            TOKENSERVICE_GRPC_ADDR=f"127.0.0.1:{free_port()}",
            TOKENSERVICE_HTTP_ADDR="",
            TOKENSERVICE_SHUTDOWN_DELAY_SECONDS="0.2",
        )
        run_cli(env, "tenant", "create", TENANT)
        storefront = run_cli(
            env, "client", "create", "--tenant", TENANT, "--kind", "storefront", "--json"
        )
        storefront_id = json.loads(storefront)["client_id"]
        print(
            f"IntrospectToken over gRPC: {args.clients} client processes x "
            f"{args.connections} connections, {args.concurrency} calls in flight each, "
            f"{args.seconds:g} s per run, {args.runs} runs; {os.cpu_count()} CPUs",
            flush=True,
        )
        medians = {}
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as logs:
            for workers in args.workers:
                runs = measure(env, workers, storefront_id, args, Path(logs))
                medians[workers] = (
                    statistics.median(rate for rate, _ in runs),
                    statistics.median(cpu for _, cpu in runs),
                )
        for workers, (rate, cpu) in medians.items():
            print(
                f"workers={workers}: median {rate:.0f} req/s, {cpu:.0f} us CPU per call, "
                f"{1e6 / cpu:.0f} req/s per core (so {workers} free cores: "
                f"{workers * 1e6 / cpu:.0f})",
                flush=True,
            )
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
