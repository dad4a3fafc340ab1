"""The grpc core options that bound what gRPC clients can hold: streams per connection,
connections, how long a connection may idle or live, keepalive, metadata size. Each comes from
a setting (README "Limits" says why each default); the names are grpc core's channel arguments
(include/grpc/impl/channel_arg_names.h).

Every limit must be greater than 0, as the HTTP bridge's must: 0 is not "off", since without
the bound one client could hold a connection, a stream or memory for as long as it likes (and
for grpc core a 0 ms idle limit would close every connection at once). Two settings are not
bounds on what a client holds and take 0 for "off" (grpc core's INT_MAX milliseconds): the
connection age, a tool for spreading long-lived channels over new replicas (its grace of 0
means none: calls still running at the age are cut), and the server's own keepalive pings
(idle connections are closed by the idle limit anyway).
"""

from __future__ import annotations

from server.settings import ConfigError, Settings

INT_MAX = 2**31 - 1
# A client that pings more often than the minimum interval, with no data in between, gets a
# strike; one strike beyond this many ends the connection with GOAWAY ENHANCE_YOUR_CALM
# ("too_many_pings"). grpc core's own default, kept explicit.
MAX_PING_STRIKES = 2

Options = list[tuple[str, int]]
# Settings whose 0 would mean no bound at all (or, for grpc core, closing at once): refused.
POSITIVE = (
    "grpc_max_concurrent_streams",
    "grpc_max_connections",
    "grpc_max_connection_idle_seconds",
    "grpc_keepalive_timeout_seconds",
    "grpc_keepalive_min_interval_seconds",
    "grpc_max_metadata_bytes",
)


def limit_options(settings: Settings, *, max_connections: int | None = None) -> Options:
    """The options for `grpc.aio.server`. `max_connections` overrides the setting with the
    effective cap, which may be lower than configured (to fit the process's open-file limit,
    server/process_limits.py)."""
    for field in POSITIVE:
        if getattr(settings, field) <= 0:
            raise ConfigError(f"TOKENSERVICE_{field.upper()} must be greater than 0")
    connections = settings.grpc_max_connections if max_connections is None else max_connections
    if connections <= 0:
        raise ConfigError(f"the gRPC connection cap must be greater than 0, not {connections}")
    options: Options = [
        ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
        # By default grpc core counts a stream against the limit until the application has
        # freed it, after the client has seen it end; a client that then opens the next stream
        # in the slot it believes free gets REFUSED_STREAM, which grpcio does not retry (a
        # burst of 150 calls on one channel lost 1 to 9 of them with UNAVAILABLE). Counting
        # the streams open in the transport, as the client does, loses none. This is
        # GRPC_ARG_MAX_CONCURRENT_STREAMS_OVERLOAD_PROTECTION (chttp2/transport/internal.h);
        # the calls-in-handlers limit bounds what the streams can make the service hold.
        ("grpc.http.overload_protection", 0),
        ("grpc.max_connection_idle_ms", _ms(settings, "grpc_max_connection_idle_seconds")),
        ("grpc.max_connection_age_ms", _ms_or_off(settings, "grpc_max_connection_age_seconds")),
        (
            "grpc.max_connection_age_grace_ms",
            _ms(settings, "grpc_max_connection_age_grace_seconds"),
        ),
        ("grpc.keepalive_time_ms", _ms_or_off(settings, "grpc_keepalive_time_seconds")),
        # In grpcio 1.85 keepalive_timeout_ms alone does not close a peer that never answers:
        # the ping timeout does, and it defaults to 1 minute whatever keepalive_timeout says
        # (measured: 61 s). It is grpc core's internal GRPC_ARG_PING_TIMEOUT_MS
        # (chttp2/transport/internal.h); both get the setting.
        ("grpc.keepalive_timeout_ms", _ms(settings, "grpc_keepalive_timeout_seconds")),
        ("grpc.http2.ping_timeout_ms", _ms(settings, "grpc_keepalive_timeout_seconds")),
        # Clients may ping this often while they have calls; with keepalive_permit_without_calls
        # also on idle connections (grpc core otherwise allows one ping per 2 hours there).
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            _ms(settings, "grpc_keepalive_min_interval_seconds"),
        ),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        # The server's own keepalive pings go to idle connections too, to find dead peers
        # that still hold a file descriptor.
        ("grpc.keepalive_permit_without_calls", 1),
        # Soft and hard limit alike: grpc core refuses a random share of the requests between
        # the two, and one limit is easier to reason about.
        ("grpc.max_metadata_size", settings.grpc_max_metadata_bytes),
        ("grpc.absolute_max_metadata_size", settings.grpc_max_metadata_bytes),
        ("grpc.max_allowed_incoming_connections", connections),
    ]
    return options


def _ms(settings: Settings, field: str) -> int:
    seconds: float = getattr(settings, field)
    if seconds < 0:
        raise ConfigError(f"TOKENSERVICE_{field.upper()} must not be negative")
    return max(1, min(INT_MAX, round(seconds * 1000))) if seconds else 0


def _ms_or_off(settings: Settings, field: str) -> int:
    """0 seconds: off (grpc core's INT_MAX)."""
    return INT_MAX if getattr(settings, field) == 0 else _ms(settings, field)
