"""What the whole suite registers once: the shared fixtures (tests/support), the scheduler that
runs tests/reliability as a few serial groups, and the notice of what was skipped for want of a
tool."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

# Before anything imports them: the support modules' own asserts report like a test's.
pytest.register_assert_rewrite("tests.support")

from tests.support import outside_tools  # noqa: E402
from tests.support.databases import POSTGRES_SKIPPED  # noqa: E402

pytest_plugins = ["tests.support.databases", "tests.support.harness"]

# The name under which a test report carries the numbers tests/reliability recorded.
NUMBERS_PROPERTY = "reliability_numbers"


# --- pytest-xdist ---------------------------------------------------------------------------------
# The reliability suite keeps one in-process ledger (tests/reliability/support.py) that a leak test
# reads at the end. With `--dist loadgroup` (make test) it runs as RELIABILITY_GROUPS: each group
# on one worker, in its collection order, ending with a leak test of its own over that worker's
# ledger (tests/reliability/conftest.py gives the leak test one case per group), while the other
# workers take the rest test by test. Three groups rather than one: run serially, the suite was
# the longest chain of `make test` (about 250 of its 270 s). A scheduler of our own, because
# xdist 3.8 marks its groups through a node attribute pytest 9.2 no longer reads (`xdist_group`
# marks do not group there).
RELIABILITY = "tests/reliability/"
# Balanced by their bounded run times; a module not named here runs in the first group.
RELIABILITY_GROUPS: dict[str, tuple[str, ...]] = {
    "reliability-a": ("test_bad_input_volume", "test_jwt_negatives", "test_account_flows"),
    "reliability-b": (
        "test_abuse_controls",
        "test_identity_provider_abuse",
        "test_database_faults",
        "test_refresh_retries",
    ),
    "reliability-c": (
        "test_crash_durability",
        "test_hostile_clients",
        "test_refresh_races",
        "test_graceful_shutdown",
        "test_revocation_propagation",
        "test_revocation_feed_delivery",
    ),
}


def reliability_group(nodeid: str) -> str | None:
    """The group a reliability test runs in; None for every other test. A leak test case names
    its group as its parameter."""
    if not nodeid.startswith(RELIABILITY):
        return None
    for group in RELIABILITY_GROUPS:
        if nodeid.endswith(f"[{group}]"):
            return group
    module = nodeid[len(RELIABILITY) :].split(".py", 1)[0]
    for group, modules in RELIABILITY_GROUPS.items():
        if module in modules:
            return group
    return next(iter(RELIABILITY_GROUPS))


@pytest.hookimpl(trylast=True)  # after the reliability suite has put its leak tests last
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest work first: the reliability groups (each a serial chain on one worker,
    about 130 s for the longest), then the tests marked slow, then the rest, each kind in its
    collection order (a stable sort: a group's leak test stays last). In collection order the
    reliability groups came last, and their chains and the slow tests made the run's tail,
    with a core idle; scheduled first, they run beside the short tests. Every worker sorts
    alike, as pytest-xdist requires."""

    def kind(item: pytest.Item) -> int:
        if reliability_group(item.nodeid) is not None:
            return 0
        return 1 if item.get_closest_marker("slow") is not None else 2

    items.sort(key=kind)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    # pytest-xdist ships no type information (no py.typed), so its scheduler is Any to mypy;
    # subclassing it is the plugin's documented way to schedule.
    class SerialGroups(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return reliability_group(nodeid) or str(super()._split_scope(nodeid))

    return SerialGroups(config, log)


# --- The notice of what was skipped ---------------------------------------------------------------
# Under pytest-xdist the skips happen in the workers and the summary prints in the controller, so
# each skip report carries its reason (user_properties travel with the report) and the controller
# gathers them; without xdist the same hooks run in one process.
_SKIP_PROPERTY = "tokenservice_skipped"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.skipped:
        for kind, reasons in (("postgres", POSTGRES_SKIPPED), ("tool", outside_tools.SKIPPED)):
            for reason in reasons:
                if (kind, reason) not in report.user_properties:
                    report.user_properties.append((_SKIP_PROPERTY, (kind, reason)))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    from_worker = getattr(report, "node", None) is not None  # xdist's controller
    value: Any
    for name, value in report.user_properties:
        if name == _SKIP_PROPERTY:
            kind, reason = value
            reasons = POSTGRES_SKIPPED if kind == "postgres" else outside_tools.SKIPPED
            if reason not in reasons:
                reasons.append(reason)
        elif name == NUMBERS_PROPERTY and from_worker:
            from tests.reliability.support import LEDGER

            LEDGER.numbers.extend((test, numbers) for test, numbers in value)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if POSTGRES_SKIPPED:
        terminalreporter.write_sep(
            "=", "PostgreSQL tests SKIPPED: " + POSTGRES_SKIPPED[0], yellow=True, bold=True
        )
    for reason in outside_tools.SKIPPED:
        terminalreporter.write_sep("=", "tests SKIPPED: " + reason, yellow=True, bold=True)
    _reliability_summary(terminalreporter)


def _reliability_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The numbers tests/reliability recorded (tests/reliability/support.py's ledger)."""
    support = sys.modules.get("tests.reliability.support")
    if support is None or not support.LEDGER.numbers:
        return
    mode = "soak (full sizes)" if support.SOAK else "bounded"
    terminalreporter.write_sep("=", f"reliability numbers, {mode}", bold=True)
    for name, numbers in support.LEDGER.numbers:
        shown = ", ".join(f"{key}={value}" for key, value in numbers.items())
        terminalreporter.write_line(f"{name}: {shown}")
    path = os.environ.get("TOKENSERVICE_RELIABILITY_REPORT")
    if path:
        report = {"mode": mode, "results": [{"test": n, **v} for n, v in support.LEDGER.numbers]}
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        terminalreporter.write_line(f"written to {path}")
