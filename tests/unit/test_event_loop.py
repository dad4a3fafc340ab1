"""launcher/event_loop.py: `run` runs a coroutine to completion on the loop chosen, and refuses
a choice it cannot honour with a ConfigError naming the setting, closing the coroutine so that
nothing warns of one never awaited."""

from __future__ import annotations

import asyncio
import inspect
import sys
import warnings

import pytest
import uvloop

from launcher import event_loop
from server.settings import ConfigError, Settings


async def loop_and_name() -> tuple[type, str]:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()), event_loop.running_loop_name()


def test_uvloop_is_the_default_setting() -> None:
    assert Settings().event_loop == "uvloop"
    assert Settings.from_env({"TOKENSERVICE_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"


@pytest.mark.parametrize(
    ("choice", "loop_type", "name"),
    [
        ("uvloop", uvloop.Loop, "uvloop"),
        (" UVLoop ", uvloop.Loop, "uvloop"),
        ("asyncio", asyncio.BaseEventLoop, "asyncio"),
    ],
)
def test_run_runs_on_the_chosen_loop(choice: str, loop_type: type, name: str) -> None:
    running, running_name = event_loop.run(loop_and_name(), choice)
    assert issubclass(running, loop_type)
    assert running_name == name
    if name == "asyncio":
        assert not issubclass(running, uvloop.Loop)


def test_an_unknown_choice_is_a_config_error_and_the_coroutine_is_closed() -> None:
    main = loop_and_name()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would fail the test
        with pytest.raises(ConfigError, match="TOKENSERVICE_EVENT_LOOP must be one of"):
            event_loop.run(main, "tornado")
    assert inspect.getcoroutinestate(main) == inspect.CORO_CLOSED


def test_uvloop_missing_says_how_to_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    main = loop_and_name()
    with pytest.raises(ConfigError, match="TOKENSERVICE_EVENT_LOOP=asyncio"):
        event_loop.run(main, "uvloop")
    assert inspect.getcoroutinestate(main) == inspect.CORO_CLOSED
