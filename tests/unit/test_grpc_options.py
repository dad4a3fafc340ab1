"""The grpc core options built from the settings: 0 turns a duration limit off (grpc core's
INT_MAX) instead of closing every connection at once, the effective connection limit can be
lower than the setting, and nonsense is refused with the variable's name.

That each option takes effect in grpc core is shown against a real server in
tests/integration/test_grpc_limits.py."""

from __future__ import annotations

import pytest

from server.errors import InvalidRequest
from server.grpc_options import INT_MAX, limit_options
from server.settings import Settings


def test_defaults() -> None:
    options = dict(limit_options(Settings()))
    assert options == {
        "grpc.max_concurrent_streams": 100,
        "grpc.http.overload_protection": 0,
        "grpc.max_connection_idle_ms": 300_000,
        "grpc.max_connection_age_ms": 3_600_000,
        "grpc.max_connection_age_grace_ms": 30_000,
        "grpc.keepalive_time_ms": 120_000,
        "grpc.keepalive_timeout_ms": 20_000,
        "grpc.http2.ping_timeout_ms": 20_000,
        "grpc.http2.min_ping_interval_without_data_ms": 30_000,
        "grpc.http2.max_ping_strikes": 2,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.max_metadata_size": 16_384,
        "grpc.absolute_max_metadata_size": 16_384,
        "grpc.max_allowed_incoming_connections": 1000,
    }


def test_zero_turns_a_duration_limit_off() -> None:
    settings = Settings(
        grpc_max_connection_idle_seconds=0,
        grpc_max_connection_age_seconds=0,
        grpc_keepalive_time_seconds=0,
        grpc_max_connection_age_grace_seconds=0,
    )
    options = dict(limit_options(settings))
    assert options["grpc.max_connection_idle_ms"] == INT_MAX
    assert options["grpc.max_connection_age_ms"] == INT_MAX
    assert options["grpc.keepalive_time_ms"] == INT_MAX
    assert options["grpc.max_connection_age_grace_ms"] == 0  # no grace, not an endless one


def test_fractions_of_a_second_and_very_long_durations() -> None:
    options = dict(limit_options(Settings(grpc_max_connection_idle_seconds=0.25)))
    assert options["grpc.max_connection_idle_ms"] == 250
    options = dict(limit_options(Settings(grpc_max_connection_age_seconds=10**9)))
    assert options["grpc.max_connection_age_ms"] == INT_MAX


def test_the_effective_connection_limit_overrides_the_setting() -> None:
    settings = Settings(grpc_max_connections=1000)
    options = dict(limit_options(settings, max_connections=300))
    assert options["grpc.max_allowed_incoming_connections"] == 300
    assert "grpc.max_allowed_incoming_connections" not in dict(
        limit_options(Settings(grpc_max_connections=0))
    )


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("grpc_max_concurrent_streams", 0, "TOKENSERVICE_GRPC_MAX_CONCURRENT_STREAMS"),
        ("grpc_max_metadata_bytes", 0, "TOKENSERVICE_GRPC_MAX_METADATA_BYTES"),
        ("grpc_max_connections", -1, "TOKENSERVICE_GRPC_MAX_CONNECTIONS"),
        ("grpc_keepalive_timeout_seconds", 0, "TOKENSERVICE_GRPC_KEEPALIVE_TIMEOUT_SECONDS"),
        ("grpc_max_connection_idle_seconds", -1, "TOKENSERVICE_GRPC_MAX_CONNECTION_IDLE_SECONDS"),
    ],
)
def test_nonsense_is_refused_naming_the_variable(field: str, value: float, variable: str) -> None:
    with pytest.raises(InvalidRequest, match=variable):
        limit_options(Settings(**{field: value}))  # type: ignore[arg-type]
