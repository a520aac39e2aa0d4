"""Suite-wide pytest hooks: in CI, a skipped test fails the run.

A test that skips because a tool or package is missing (shellcheck, a driver, a renderer)
never runs on a fresh machine, and the run still reads green. `.ci/run` sets
`SERL_FORBID_SKIPS=1`, which turns any skip (of a test or of a whole module at collection)
into a failing exit status and names each one, so whatever the suite needs must come from
`scripts/setup.sh`, never from the machine it happened to run on. Tests that skip only when an
optional package *is* installed (their subject is the error without it) never skip there.
"""

from __future__ import annotations

import os

import pytest

FORBID_SKIPS = os.environ.get("SERL_FORBID_SKIPS") == "1"


def _skips(config: pytest.Config) -> list[pytest.TestReport]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter is not None else []


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skips = _skips(config)
    if FORBID_SKIPS and skips:
        terminalreporter.section("skipped tests fail this run (SERL_FORBID_SKIPS=1)", red=True)
        for report in skips:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            terminalreporter.write_line(f"{report.nodeid}: {reason}")
        terminalreporter.write_line(
            "Install what these tests need in scripts/setup.sh (or the extras it installs)."
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if FORBID_SKIPS and _skips(session.config) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
