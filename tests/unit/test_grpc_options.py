"""The grpc core options built from the settings: a limit of 0 is refused (it is not "off"), but
for the connection age and the keepalive time, where 0 is grpc core's INT_MAX; the effective
connection cap can be lower than the setting; nonsense is refused with the variable's name.

That each option takes effect in grpc core is shown against a real server in
tests/integration/test_grpc_limits.py."""

from __future__ import annotations

import pytest

from server.grpc_options import INT_MAX, limit_options
from server.interceptors import ErrorInterceptor
from server.settings import ConfigError, Settings


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


def test_zero_turns_off_only_the_connection_age_and_the_keepalive_pings() -> None:
    settings = Settings(
        grpc_max_connection_age_seconds=0,
        grpc_keepalive_time_seconds=0,
        grpc_max_connection_age_grace_seconds=0,
    )
    options = dict(limit_options(settings))
    assert options["grpc.max_connection_age_ms"] == INT_MAX
    assert options["grpc.keepalive_time_ms"] == INT_MAX
    assert options["grpc.max_connection_age_grace_ms"] == 0  # no grace, not an endless one


def test_fractions_of_a_second_and_very_long_durations() -> None:
    options = dict(limit_options(Settings(grpc_max_connection_idle_seconds=0.25)))
    assert options["grpc.max_connection_idle_ms"] == 250
    options = dict(limit_options(Settings(grpc_max_connection_age_seconds=10**9)))
    assert options["grpc.max_connection_age_ms"] == INT_MAX


def test_the_effective_connection_cap_overrides_the_setting() -> None:
    options = dict(limit_options(Settings(grpc_max_connections=1000), max_connections=300))
    assert options["grpc.max_allowed_incoming_connections"] == 300
    with pytest.raises(ConfigError, match="connection cap"):
        limit_options(Settings(), max_connections=0)


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("grpc_max_concurrent_streams", 0, "TOKENSERVICE_GRPC_MAX_CONCURRENT_STREAMS"),
        ("grpc_max_metadata_bytes", 0, "TOKENSERVICE_GRPC_MAX_METADATA_BYTES"),
        ("grpc_max_connections", 0, "TOKENSERVICE_GRPC_MAX_CONNECTIONS"),
        ("grpc_max_connection_idle_seconds", 0, "TOKENSERVICE_GRPC_MAX_CONNECTION_IDLE_SECONDS"),
        ("grpc_keepalive_timeout_seconds", 0, "TOKENSERVICE_GRPC_KEEPALIVE_TIMEOUT_SECONDS"),
        (
            "grpc_keepalive_min_interval_seconds",
            0,
            "TOKENSERVICE_GRPC_KEEPALIVE_MIN_INTERVAL_SECONDS",
        ),
        ("grpc_max_connection_age_seconds", -1, "TOKENSERVICE_GRPC_MAX_CONNECTION_AGE_SECONDS"),
    ],
)
def test_nonsense_is_refused_naming_the_variable(field: str, value: float, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        # The field is a parameter of the test, so mypy cannot match the value to its type.
        limit_options(Settings(**{field: value}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("grpc_message_timeout_seconds", "TOKENSERVICE_GRPC_MESSAGE_TIMEOUT_SECONDS"),
        ("grpc_max_concurrent_rpcs", "TOKENSERVICE_GRPC_MAX_CONCURRENT_RPCS"),
    ],
)
def test_the_call_limits_refuse_zero_too(field: str, variable: str) -> None:
    settings = Settings(**{field: 0})  # type: ignore[arg-type]  # field: a test parameter
    with pytest.raises(ConfigError, match=variable):
        ErrorInterceptor(
            message_timeout=settings.grpc_message_timeout_seconds,
            max_calls=settings.grpc_max_concurrent_rpcs,
        )
