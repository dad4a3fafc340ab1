"""The count of calls in handlers while the server drains (server/unary_calls.py CallsInFlight):
every new call refused and none evicted for it, and `drained` set once the last unary call has
ended, whatever streams (health Watch) stay open."""

from __future__ import annotations

from server.unary_calls import CallsInFlight, RequestReader


class NoEviction(RequestReader):
    """A request reader whose eviction must not be asked for while draining."""

    def evict_oldest(self, waited: float) -> bool:
        raise AssertionError("a draining server evicted a call")


def test_a_drain_without_unary_calls_is_drained_at_once_and_refuses_without_evicting() -> None:
    calls = CallsInFlight(10)
    calls.count = calls.streams = 2  # two health Watch streams, no unary call
    calls.drain()
    assert calls.drained.is_set() and calls.limit == 0
    assert not calls.admits(NoEviction(10.0))


def test_a_drain_is_drained_when_the_last_unary_call_ends() -> None:
    calls = CallsInFlight(10)
    calls.count = 2
    calls.drain()
    assert not calls.drained.is_set()
    calls.count -= 1
    calls.call_ended()
    assert not calls.drained.is_set()
    calls.count -= 1
    calls.call_ended()
    assert calls.drained.is_set()
