"""Prometheus metrics of the service: per-RPC and per-route request counts and latency
histograms, and the introspection cache's hits and misses, served as text at `GET /metrics`.

The figures live in plain Python counters, not in prometheus_client's Counter/Histogram: those
take a lock per update (about 5 us for a count plus an observation on this machine's cores,
more than the rest of the wrapper around a call), while everything here is recorded on the
event loop's thread, where an integer increment needs no lock. A collector turns them into the
standard metric families (cumulative `_bucket`/`_sum`/`_count`) when scraped, in the same
thread. Do not record from other threads.

The registry is the service's own (`REGISTRY`), not prometheus_client's global default, so that
importing the service into another program adds nothing to that program's metrics. It is one
per process: with `serve --workers N` each worker answers `/metrics` with its own figures.

Labels hold only names the service defines: the gRPC method (only registered methods reach the
recorder), the status code's name, the HTTP route's *template* (`/customer/{tenant}/login`,
`unmatched` for any path that is not a route) and a known HTTP method. No request value, and so
no token, secret or password, can become a label.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from server.store.token_cache import LOOKUP_RESULTS

# Seconds: from 0.1 ms (a cached introspection) to 1 s (an argon2id login under load).
BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
UNMATCHED = "unmatched"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"

__all__ = [
    "CONTENT_TYPE_LATEST",
    "HTTP_IN_FLIGHT",
    "REGISTRY",
    "GrpcSeries",
    "InFlight",
    "exposition",
    "grpc_series",
    "record_abuse",
    "record_cache_lookup",
    "record_http",
    "record_http_connection_event",
    "track_grpc_calls_in_flight",
    "track_revocation_feed",
]


class Series:
    """One label set's latency histogram: counts per bucket (the last is +Inf) and the sum."""

    __slots__ = ("buckets", "total_seconds")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total_seconds = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        out = []
        for bound, count in zip((*BUCKETS, float("inf")), self.buckets, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class GrpcSeries(Series):
    """One gRPC method: its latency histogram and its calls per status code name."""

    __slots__ = ("codes",)

    def __init__(self) -> None:
        super().__init__()
        self.codes: dict[str, int] = {}

    def record(self, code: str, seconds: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total_seconds += seconds
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1


_grpc: dict[str, GrpcSeries] = {}
_http_latency: dict[str, Series] = {}
_http_counts: dict[tuple[str, str, str], int] = {}
_cache = dict.fromkeys(LOOKUP_RESULTS, 0)
# Abuse controls (server/abuse.py), by event: fixed names only, never an email or an address.
ABUSE_EVENTS = (
    "login_account_locked",  # a failed login locked an account (or made its lock longer)
    "login_account_refused",  # a login refused because its account was locked
    "login_address_locked",  # a failed login locked a client address
    "login_address_refused",  # a login refused because its client address was locked
    "anonymous_refused",  # an anonymous token refused by its client's quota
    "refresh_token_reused",  # a rotated refresh token presented after its grace: session revoked
    "signup_refused",  # a sign-up refused by the account-request throttle (per e-mail or address)
    "password_reset_refused",  # a password-reset request refused by that throttle
    "optin_resend_refused",  # an opt-in link resend refused by that throttle
)
_abuse = dict.fromkeys(ABUSE_EVENTS, 0)
# The HTTP bridge's connection limits (http_bridge/connection_limits.py), by event.
HTTP_CONNECTION_EVENTS = (
    "header_timeout",  # 408: a request's head did not arrive within its deadline
    "body_timeout",  # 408: a request's body did not arrive within its deadline
    "header_too_large",  # 431: a head over the byte limit
    "too_many_headers",  # 431: a head with more header lines than the limit
    "evicted_head",  # at the connection cap, a connection still sending its head was closed (408)
    "evicted_idle",  # at the connection cap, an idle keep-alive connection was closed
    "refused",  # 503: at the connection cap with nothing to evict
    "malformed",  # 400: a request httptools could not parse
)
_http_connection_events = dict.fromkeys(HTTP_CONNECTION_EVENTS, 0)


class InFlightCount(Protocol):
    count: int


# The calls-in-handlers counts of this process's gRPC servers (server/unary_calls.py), read at
# scrape time; held weakly, so a stopped server's count leaves with it.
_grpc_in_flight: weakref.WeakSet[InFlightCount] = weakref.WeakSet()


def grpc_series(method: str) -> GrpcSeries:
    """The series of one full gRPC method name (`/tokenservice.v1.TokenService/IssueToken`);
    the interceptor looks it up once per method and records into it directly."""
    series = _grpc.get(method)
    if series is None:
        series = _grpc[method] = GrpcSeries()
    return series


def record_http(route: str, method: str, status: int, seconds: float) -> None:
    """One HTTP request: `route` is the route template (or UNMATCHED)."""
    series = _http_latency.get(route)
    if series is None:
        series = _http_latency[route] = Series()
    series.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
    series.total_seconds += seconds
    if method not in HTTP_METHODS:
        method = OTHER_METHOD
    key = (route, method, str(status))
    _http_counts[key] = _http_counts.get(key, 0) + 1


class InFlight:
    """Requests being served right now: `value` goes up when one starts, down when it ends."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


HTTP_IN_FLIGHT = InFlight()


def record_cache_lookup(result: str) -> None:
    """One token lookup in the in-process cache; `result` is one of LOOKUP_RESULTS."""
    _cache[result] += 1


def record_abuse(event: str) -> None:
    """One abuse-control event; `event` is one of ABUSE_EVENTS."""
    _abuse[event] += 1


def record_http_connection_event(event: str) -> None:
    """One connection-limit event of the HTTP bridge; `event` is one of HTTP_CONNECTION_EVENTS."""
    _http_connection_events[event] += 1


class FeedCounts(Protocol):
    @property
    def watchers(self) -> int: ...

    overflow_resets: dict[str, int]


# This process's revocation feed (server/revocation_feed.py), read at scrape time, held weakly.
_feeds: weakref.WeakSet[FeedCounts] = weakref.WeakSet()


def track_revocation_feed(feed: FeedCounts) -> None:
    """Reports `feed`'s watchers and its overflow resets at every scrape, while it lives."""
    _feeds.add(feed)


def track_grpc_calls_in_flight(calls: InFlightCount) -> None:
    """Adds `calls.count` into the calls-in-flight gauge at every scrape, for as long as
    `calls` lives."""
    _grpc_in_flight.add(calls)


class ServiceCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        grpc_total = CounterMetricFamily(
            "tokenservice_grpc_requests",
            "Unary gRPC calls, by full method name and status code.",
            labels=["method", "code"],
        )
        grpc_seconds = HistogramMetricFamily(
            "tokenservice_grpc_request_seconds",
            "Time in the server per unary gRPC call, from the interceptor's view.",
            labels=["method"],
        )
        for method, series in sorted(_grpc.items()):
            for code, count in sorted(series.codes.items()):
                grpc_total.add_metric([method, code], count)
            grpc_seconds.add_metric([method], series.cumulative(), series.total_seconds)
        yield grpc_total
        yield grpc_seconds
        yield GaugeMetricFamily(
            "tokenservice_grpc_calls_in_flight",
            "gRPC calls inside handlers now, including calls still waiting for their request "
            "message; beyond TOKENSERVICE_GRPC_MAX_CONCURRENT_RPCS a call is refused.",
            value=sum(calls.count for calls in list(_grpc_in_flight)),
        )

        http_total = CounterMetricFamily(
            "tokenservice_http_requests",
            "HTTP bridge requests, by route template (`unmatched`: no route), method and status.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in sorted(_http_counts.items()):
            http_total.add_metric([route, method, status], count)
        http_seconds = HistogramMetricFamily(
            "tokenservice_http_request_seconds",
            "Time in the HTTP bridge per request, by route template.",
            labels=["route"],
        )
        for route, route_series in sorted(_http_latency.items()):
            http_seconds.add_metric([route], route_series.cumulative(), route_series.total_seconds)
        yield http_total
        yield http_seconds
        yield GaugeMetricFamily(
            "tokenservice_http_requests_in_flight",
            "HTTP bridge requests being served now (their head read, their answer not yet sent).",
            value=HTTP_IN_FLIGHT.value,
        )

        cache = CounterMetricFamily(
            "tokenservice_introspection_cache",
            "Token lookups answered from the in-process cache (hit) or from the store: not "
            "cached (miss), or cached but not confirmed (unconfirmed: on PostgreSQL, the "
            "replica had not proven within TOKENSERVICE_REVOCATION_MAX_LAG_SECONDS that it "
            "heard every other replica's revocations); hit ratio: hit / (hit + miss + "
            "unconfirmed).",
            labels=["result"],
        )
        for result in LOOKUP_RESULTS:
            cache.add_metric([result], _cache[result])
        yield cache

        abuse = CounterMetricFamily(
            "tokenservice_abuse_events",
            "Abuse controls: accounts and client addresses locked by failed customer logins, "
            "logins refused while locked, anonymous tokens refused by a client's quota, rotated "
            "refresh tokens presented again after the grace window (their sessions revoked).",
            labels=["event"],
        )
        for event in ABUSE_EVENTS:
            abuse.add_metric([event], _abuse[event])
        yield abuse

        connections = CounterMetricFamily(
            "tokenservice_http_connection_events",
            "HTTP connection limits: requests cut off by a deadline (408), heads refused for "
            "size or header count (431), connections evicted or refused (503) at the cap, "
            "unparsable requests (400).",
            labels=["event"],
        )
        for event in HTTP_CONNECTION_EVENTS:
            connections.add_metric([event], _http_connection_events[event])
        yield connections
        yield from _feed_metrics(list(_feeds))


def _feed_metrics(feeds: list[FeedCounts]) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "tokenservice_revocation_watchers",
        "Revocation feed watchers connected now (WatchRevocations streams and /oauth/revocations "
        "event streams together); beyond TOKENSERVICE_REVOCATION_STREAMS_MAX one is refused.",
        value=sum(feed.watchers for feed in feeds),
    )
    resets = CounterMetricFamily(
        "tokenservice_revocation_feed_overflow_resets",
        "Events replaced by a reset: each time a watcher's queue overflowed because it did not "
        "read (slow_watcher), each resume with too much to catch up on (backlog). A reset makes "
        "a resource server drop every answer it kept.",
        labels=["reason"],
    )
    for reason in ("slow_watcher", "backlog"):
        resets.add_metric([reason], sum(feed.overflow_resets[reason] for feed in feeds))
    yield resets


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(ServiceCollector())


def _register_process_collector() -> None:
    # process_resident_memory_bytes, process_cpu_seconds_total, ... (Linux /proc only).
    from prometheus_client import ProcessCollector

    ProcessCollector(registry=REGISTRY)


_register_process_collector()


def exposition() -> bytes:
    """The registry in the Prometheus text format (content type CONTENT_TYPE_LATEST)."""
    return generate_latest(REGISTRY)
