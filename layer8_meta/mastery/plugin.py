"""The pytest plugin of mastery mode (``pytest -p layer8_meta.mastery.plugin``).

At ``pytest_configure``, before any test module is imported, it installs the swaps named in
``$DLSTACK_IMPL`` (:mod:`layer8_meta.mastery.swap`); a swap that cannot be made stops the session
with a usage error naming the problem. The report header says which modules are the learner's.
It counts outcomes (a test passed when its call passed and nothing else failed; an error in
set-up or tear-down counts as a failure) and, when ``$DLSTACK_MASTERY_RESULT`` names a file,
writes ``{"passed", "failed", "skipped", "swapped"}`` there at the end of the session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from layer0_math.lab import write_json
from layer8_meta.mastery.swap import ENV, SwapError, install, parse_env

RESULT_ENV = "DLSTACK_MASTERY_RESULT"


class _Tally:
    def __init__(self) -> None:
        self.outcome: dict[str, str] = {}  # test id -> passed | failed | skipped

    def record(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.outcome[report.nodeid] = "failed"
        elif report.skipped and self.outcome.get(report.nodeid) != "failed":
            self.outcome[report.nodeid] = "skipped"
        elif report.when == "call" and report.nodeid not in self.outcome:
            self.outcome[report.nodeid] = "passed"

    def counts(self) -> dict[str, int]:
        values = list(self.outcome.values())
        return {k: values.count(k) for k in ("passed", "failed", "skipped")}


_tally = _Tally()
_swapped: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    try:
        for swap in parse_env(os.environ.get(ENV, "")):
            install(swap)
            _swapped.append(f"{swap.target} = {swap.impl}")
    except SwapError as exc:
        raise pytest.UsageError(f"mastery: {exc}") from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"mastery: {line} (the learner's)" for line in _swapped] or ["mastery: no swap"]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _tally.record(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:  # a test module that does not even import counts as a failure
        _tally.outcome[report.nodeid] = "failed"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(RESULT_ENV)
    if path:
        result: dict[str, Any] = {**_tally.counts(), "swapped": list(_swapped)}
        write_json(Path(path), result)
