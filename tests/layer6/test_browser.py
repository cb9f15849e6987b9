"""The page in a real browser: Playwright drives Debian's headless Chromium against the service
on loopback; a prompt streams a story, a class picker shows DDPM samples, an upload is labelled.

Skipped, with the reason, where ``/usr/bin/chromium`` or Playwright is missing (CI installs
Chromium in ``.ci/run``). A screenshot of the page goes to the test's tmp folder.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.chromium import ARGS, BROWSER_MARKS, CHROMIUM
from tests.layer6.service_fakes import FakeLoader, fake_app, live_server, png_bytes

pytestmark = BROWSER_MARKS


def test_the_page_streams_samples_and_classifies(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    upload = tmp_path / "cat.png"
    upload.write_bytes(png_bytes(np.full((32, 32, 3), 200, np.uint8)))
    loader = FakeLoader(generator={"delay": 0.02})
    app, _, _ = fake_app(tmp_path / "registry", loader, api_key="page-key")
    with live_server(app) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('status').textContent"
                                   ".startsWith('ready')", timeout=10_000)  # fmt: skip
            page.fill("#api-key", "page-key")

            page.fill("#prompt", "Once")
            page.fill("#max-tokens", "12")
            page.click("#generate")
            page.wait_for_function("document.getElementById('story-stats').textContent"
                                   ".includes('12 tokens')", timeout=10_000)  # fmt: skip
            assert page.text_content("#story") == "abcdefghijkl"

            page.select_option("#digit", "7")
            page.click("#sample")
            img = page.wait_for_selector("#samples-box img", timeout=10_000)
            page.wait_for_function("document.querySelector('#samples-box img').naturalWidth > 0")
            assert img.get_attribute("alt") == "DDPM samples of the digit 7"
            assert "model v1" in page.text_content("#sample-stats")

            page.set_input_files("#file", str(upload))
            page.click("#classify")
            page.wait_for_function("document.getElementById('classify-result').textContent"
                                   ".includes('label')", timeout=10_000)  # fmt: skip
            result = page.text_content("#classify-result")
            assert result.startswith("class") and "(label " in result
            top = page.locator("#probabilities li").all_text_contents()
            assert len(top) == 3 and top[0].startswith(result.split(" ")[0] + ": ")

            page.fill("#api-key", "wrong")  # a refused call is shown, not swallowed
            page.click("#generate")
            page.wait_for_function("document.getElementById('story').textContent"
                                   ".includes('API key')", timeout=10_000)  # fmt: skip
            page.fill("#api-key", "page-key")
            page.click("#generate")
            page.wait_for_function("document.getElementById('story-stats').textContent"
                                   ".includes('tokens')", timeout=10_000)  # fmt: skip
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert errors == []
        finally:
            browser.close()
