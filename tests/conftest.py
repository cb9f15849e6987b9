"""Shared test set-up: hypothesis profiles, the `data` marker, and run folders in tmp."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _data_available() -> tuple[bool, str]:
    folders = [p for p in os.environ.get("DLSTACK_DATA", "").split(":") if p]
    if any(os.path.isdir(p) for p in folders):
        return True, ""
    return False, "real data not found: set DLSTACK_DATA to the shared data folder"


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    """Deliverables run in tests write under tmp, never into the repository's runs/."""
    monkeypatch.setenv("DLSTACK_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DLSTACK_PROGRESS", "0")


@pytest.fixture
def require_data():
    """Skip when the real data is missing, unless DLSTACK_REQUIRE_DATA=1 (then fail)."""
    ok, why = _data_available()
    if not ok:
        if os.environ.get("DLSTACK_REQUIRE_DATA") == "1":
            pytest.fail(why + " (DLSTACK_REQUIRE_DATA=1)")
        pytest.skip(why)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "data" in item.keywords and "require_data" not in getattr(item, "fixturenames", ()):
            item.fixturenames.append("require_data")
