"""The reliability suite: bounded in `make test`, full-size in `make soak` (TOKENSERVICE_SOAK=1).

Every test writes to one ledger (tests/reliability/support.py): the secrets it saw, the log
files of the servers it started, the error messages it received and the numbers it measured.
The leak test (test_zz_nothing_leaks.py) runs last and reads all of it (under pytest-xdist, one
case per group of tests/conftest.py's RELIABILITY_GROUPS, each at the end of its group, on its
group's worker); the numbers are printed at the end of the run and, with
TOKENSERVICE_RELIABILITY_REPORT=path, written there as JSON.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.conftest import NUMBERS_PROPERTY, RELIABILITY_GROUPS
from tests.reliability.support import LEDGER

LAST_MODULE = "test_zz_nothing_leaks"


def pytest_itemcollected(item: pytest.Item) -> None:
    """The reliability suite starts services and drives them for seconds: make test-fast
    (`-m "not slow"`) leaves it out."""
    item.add_marker(pytest.mark.slow)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Under pytest-xdist the suite runs as RELIABILITY_GROUPS (tests/conftest.py), a worker's
    ledger holding its groups' tests only: one leak test case per group, each run at the end of
    its group on its group's worker. In one process (make soak) one case reads everything."""
    if "ledger_group" not in metafunc.fixturenames:
        return
    under_xdist = hasattr(metafunc.config, "workerinput")
    groups = list(RELIABILITY_GROUPS) if under_xdist else ["all"]
    metafunc.parametrize("ledger_group", groups)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The leak test reads what every other test left: it goes last."""
    last = [item for item in items if LAST_MODULE in item.nodeid]
    if last:
        items[:] = [item for item in items if item not in last] + last


# Under pytest-xdist the numbers are recorded in a worker and printed by the controller, which
# loads only tests/conftest.py: each test's teardown report carries the numbers it recorded, and
# tests/conftest.py gathers and prints them.
_REPORTED = [0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "teardown" and len(LEDGER.numbers) > _REPORTED[0]:
        new = LEDGER.numbers[_REPORTED[0] :]
        _REPORTED[0] = len(LEDGER.numbers)
        report.user_properties.append((NUMBERS_PROPERTY, [list(entry) for entry in new]))
    return report
