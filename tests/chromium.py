"""How the browser tests launch Chromium: Debian's headless build, driven by Playwright.

``.ci/run`` installs Debian's ``chromium``; where it (or Playwright) is missing, the tests that
use it skip and say why. Shared by layer 6's page test and layer 8's report and notes pages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# no network beyond loopback, no background services: the page under test is all that runs
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# the marks every browser test carries
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]


def browser_test(fn):
    """Decorate one test with :data:`BROWSER_MARKS` (a module of them sets ``pytestmark``)."""
    for mark in BROWSER_MARKS:
        fn = mark(fn)
    return fn
