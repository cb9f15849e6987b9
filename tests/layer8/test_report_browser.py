"""The report as a new reader sees it: headless Chromium (Debian's, driven by Playwright) opens
``report.html`` over file:// (no server: the folder must stand alone), every image has loaded,
the summary is on screen, and a full-page screenshot is written to the test's tmp folder.

Skipped, with the reason, where ``/usr/bin/chromium`` or Playwright is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.chromium import ARGS, BROWSER_MARKS, CHROMIUM
from tests.layer8.test_report import EXPECTED_STATUS, build, make_workspace

pytestmark = BROWSER_MARKS


def test_the_report_renders_with_every_image_and_the_summary_visible(tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    result = build(tmp_path, make_workspace(tmp_path))
    shot = tmp_path / "report.png"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(r.url))
            page.goto(result.html.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images, i => [i.src, i.naturalWidth])")
            totals = page.locator("#totals")
            assert totals.is_visible()
            summary = totals.inner_text()
            badges = page.locator("article h3 .badge").all_inner_texts()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert len(images) >= 2  # delta's plot and alpha's trend chart
    assert [src for src, width in images if width <= 0] == []
    assert summary.startswith("2 of 5 deliverables ok")  # alpha and delta of the planted five
    assert sorted(badges) == sorted(EXPECTED_STATUS.values())
    with Image.open(shot) as im:
        assert im.width > 800 and im.height > 900  # the whole page, longer than one screen
