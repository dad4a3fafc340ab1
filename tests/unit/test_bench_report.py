"""bench/report.py turns measurements into verdicts: the goals of issue 16 met or not, from
per-round ratios (never from ratios of medians), CPU thresholds, goals whose figures the run
did not take said to be not measured, and a smoke run labelled as one. Fed made-up
measurements, so that each verdict is known in advance."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.load import Measurement, Scenario
from bench.report import goals, is_smoke, write_report
from bench.run import Row, StoreResult
from bench.servers import Pinning


def measured(per_second: float, cpu_us: float = 100.0, p99_ms: float = 5.0) -> Measurement:
    return Measurement(2000, 10, per_second, 1.0, p99_ms, cpu_us, 0, "ok: active")


def row(name: str, server: str, ceiling: str, *rounds: Measurement, in_flight: int = 10) -> Row:
    scenario = Scenario(name, name, "http", "/x", ceiling=ceiling, server=server)
    return Row(scenario, in_flight, list(rounds))


def store(*rows: Row, name: str = "SQLite") -> StoreResult:
    return StoreResult(name, {(r.scenario.name, r.in_flight): r for r in rows}, [], [1.0, 1.0], [])


def arguments(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "runs": 3,
        "requests": 5000,
        "in_flight": [10],
        "stores": ["sqlite"],
        "peers": "install",
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def verdicts(result: StoreResult) -> dict[str, tuple[str, str]]:
    return {g.goal: (g.figures, g.verdict) for g in goals([result], None, arguments())}


def test_goals_against_the_peer_and_the_ceiling_are_medians_of_per_round_ratios() -> None:
    # Per round, ours over node: 1.3, 1.2, 1.3 (median 1.3, met). Introspection: 1600/1000,
    # 1400/1000, 1450/800 per round, median 1.6 (met), where the ratio of the medians,
    # 1450 / 1000, would say 1.45 (not met).
    result = store(
        row("http_token", "ours", "bare_http", measured(1300), measured(1200), measured(1300)),
        row("oidc_provider_token", "oidc_provider", "bare_http", *[measured(1000)] * 3),
        row(
            "http_introspect",
            "ours",
            "bare_http",
            measured(1600, 90),
            measured(1400, 120),
            measured(1450, 95),
        ),
        row(
            "oidc_provider_introspect",
            "oidc_provider",
            "bare_http",
            measured(1000),
            measured(1000),
            measured(800),
        ),
        row("introspect_seen", "ours", "bare_grpc", measured(900), measured(800), measured(860)),
        row("bare_grpc", "bare_grpc", "", measured(1000), measured(1000), measured(1000)),
    )
    found = verdicts(result)
    token = found[
        "HTTP /oauth/token ahead of node-oidc-provider, persisting every token (10 in flight)"
    ]
    assert token == ("1,300 vs 1,000 req/s: 1.30x", "met")
    introspection = found[
        "HTTP introspection ahead of node-oidc-provider, persisting every token (10 in flight)"
    ]
    assert introspection == ("1,450 vs 1,000 req/s: 1.60x", "met")
    assert found["CPU per request, introspect over HTTP (SQLite)"] == ("95 µs", "met")
    assert found["CPU per request, token over HTTP (SQLite)"] == ("100 µs", "met")
    seen = found["gRPC introspect_seen against the bare grpc.aio no-op (SQLite, 10 in flight)"]
    assert seen == ("860 req/s: 0.86", "met")


def test_http_cpu_is_shown_beside_the_bare_apps_in_the_same_rounds() -> None:
    # Per round, ours over bare: 300/100, 330/100, 280/70 (median 3.3); the verdict is the
    # absolute median, 300 µs, against 200.
    result = store(
        row(
            "http_token",
            "ours",
            "bare_http",
            measured(1000, 300),
            measured(1000, 330),
            measured(1000, 280),
        ),
        row(
            "bare_http",
            "bare_http",
            "",
            measured(9000, 100),
            measured(9000, 100),
            measured(9000, 70),
        ),
    )
    assert verdicts(result)["CPU per request, token over HTTP (SQLite)"] == (
        "300 µs (3.3x the bare uvicorn app's 100)",
        "**not met**",
    )


def test_goals_the_run_did_not_measure_say_so() -> None:
    found = verdicts(store(row("http_token", "ours", "bare_http", measured(900, 250))))
    assert found["CPU per request, token over HTTP (SQLite)"] == ("250 µs", "**not met**")
    peer = found[
        "HTTP /oauth/token ahead of node-oidc-provider, persisting every token (10 in flight)"
    ]
    assert peer[1] == "not measured"
    assert all(
        verdict == "not measured" for goal, (_, verdict) in found.items() if "PostgreSQL" in goal
    )


def test_the_postgresql_p99_is_the_worst_path_shown_beside_the_bare_servers_own() -> None:
    def at_100(name: str, server: str, *p99s: float) -> Row:
        rounds = [measured(1000, p99_ms=p99) for p99 in p99s]
        return row(name, server, "bare_grpc", *rounds, in_flight=100)

    postgres = store(
        at_100("refresh", "ours", 120, 95, 130),  # median 120: the worst, not met
        at_100("introspect_seen", "ours", 60, 70, 80),
        at_100("customer_login", "ours", 9000, 9000, 9000),  # argon2id by design: left out
        at_100("bare_grpc", "bare_grpc", 40, 55, 50),
        name="PostgreSQL",
    )
    args = arguments(in_flight=[10, 100], stores=["postgres"])
    found = {g.goal: (g.figures, g.verdict) for g in goals([postgres], None, args)}
    assert found["PostgreSQL p99 at 100 in flight, every path but customer login"] == (
        "worst refresh: 120 ms (the bare grpc.aio no-op's: 50 ms)",
        "**not met**",
    )


def test_a_small_run_is_labelled_a_smoke_run(tmp_path: Path) -> None:
    assert not is_smoke(arguments())
    assert is_smoke(arguments(runs=2)) and is_smoke(arguments(requests=4999))
    output = tmp_path / "results.md"
    result = store(row("http_token", "ours", "bare_http", measured(900)))
    for args, smoke in ((arguments(runs=1, requests=300), True), (arguments(), False)):
        write_report(
            output,
            [result],
            args=args,
            pinning=Pinning(0, 1),
            machine="test machine",
            notices=["node-oidc-provider: skipped, no Node.js"],
            protocol_lines=[],
            protocol_cpu=None,
            memory={},
            workers="",
        )
        report = output.read_text()
        assert ("SMOKE RUN" in report) is smoke
        assert ("## Goals (issue 16) — smoke figures" in report) is smoke
        assert "- node-oidc-provider: skipped, no Node.js" in report
        assert "### HTTP POST /oauth/token client_credentials" in report
        assert json.loads(output.with_suffix(".json").read_text())["smoke"] is smoke
