"""Which connection the HTTP bridge evicts at its cap (http_bridge/connection_limits.py,
ConnectionTable), at times the test chooses; and HttpLimits from settings."""

from __future__ import annotations

import pytest

from http_bridge.connection_limits import ConnectionTable, HttpLimits
from server.settings import ConfigError, Settings

MIN_AGE = 1.0


def test_nothing_is_evicted_from_an_empty_table() -> None:
    assert ConnectionTable[str]().victim(100.0, MIN_AGE) is None


def test_the_oldest_head_sender_goes_first_once_old_enough() -> None:
    table = ConnectionTable[str]()
    table.sending_head("a", 10.0)
    table.sending_head("b", 10.5)
    assert table.victim(10.9, MIN_AGE) is None  # a head on its way, new connection: kept
    assert table.victim(11.0, MIN_AGE) == "a"
    table.forget("a")
    assert table.victim(11.0, MIN_AGE) is None
    assert table.victim(11.5, MIN_AGE) == "b"


def test_head_senders_go_before_idle_keepalive_connections() -> None:
    table = ConnectionTable[str]()
    table.idle_since("pooled", 0.0)
    table.sending_head("slow", 50.0)
    assert table.victim(50.5, MIN_AGE) == "pooled"  # the head sender is too young yet
    assert table.victim(51.0, MIN_AGE) == "slow"


def test_draining_connections_go_first_at_any_age() -> None:
    table = ConnectionTable[str]()
    table.sending_head("slow", 0.0)
    table.drain("refused", 99.99)
    assert table.victim(100.0, MIN_AGE) == "refused"


def test_a_state_change_moves_a_connection_to_the_back() -> None:
    table = ConnectionTable[str]()
    table.idle_since("a", 0.0)
    table.idle_since("b", 1.0)
    table.serving("a")  # a request arrives on "a" ...
    assert table.victim(10.0, MIN_AGE) == "b"
    table.idle_since("a", 9.5)  # ... and its response is done: young again, behind "b"
    table.forget("b")
    assert table.victim(10.0, MIN_AGE) is None
    table.sending_head("a", 10.0)  # the next request's head begins: no longer idle
    assert list(table.idle) == []
    assert table.victim(11.0, MIN_AGE) == "a"


def test_serving_connections_are_never_candidates() -> None:
    table = ConnectionTable[str]()
    table.sending_head("a", 0.0)
    table.serving("a")
    assert table.victim(1000.0, MIN_AGE) is None


def test_limits_come_from_the_http_settings() -> None:
    settings = Settings(
        http_max_connections=10,
        http_header_timeout_seconds=1.5,
        http_body_timeout_seconds=2.5,
        http_max_header_bytes=2048,
        http_max_headers=20,
        http_keepalive_timeout_seconds=30,
    )
    assert HttpLimits.from_settings(settings) == HttpLimits(
        max_connections=10,
        header_timeout_seconds=1.5,
        body_timeout_seconds=2.5,
        max_header_bytes=2048,
        max_headers=20,
        keepalive_timeout_seconds=30,
    )
    assert HttpLimits.from_settings(Settings()) == HttpLimits()


@pytest.mark.parametrize(
    "setting",
    [
        "http_max_connections",
        "http_header_timeout_seconds",
        "http_body_timeout_seconds",
        "http_max_header_bytes",
        "http_max_headers",
        "http_keepalive_timeout_seconds",
    ],
)
def test_zero_is_refused_for_every_limit(setting: str) -> None:
    with pytest.raises(ConfigError) as refused:
        # The field is a parameter of the test, so mypy cannot match the value to its type.
        HttpLimits.from_settings(Settings(**{setting: 0}))  # type: ignore[arg-type]
    assert str(refused.value) == f"TOKENSERVICE_{setting.upper()} must be greater than 0"
