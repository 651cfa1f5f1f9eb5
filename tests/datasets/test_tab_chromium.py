"""Headless Chromium opens a sample dataset, pages through it, and sends a cell to the Chat prompt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"),
]


def test_open_sample_page_through_and_send(app):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs `pip install playwright`")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(app, wait_until="load")
            page.locator("#datasets-open").click()  # the default choice: Shakespeare's plays
            info = page.locator("#datasets-page-info")
            sync_api.expect(info).to_contain_text("page 1 of 2,541", timeout=30_000)
            cell_0_1 = page.locator("#datasets-table [data-testid='cell-0-1']")  # row 0, column "play"
            sync_api.expect(cell_0_1).to_have_text("All Is Well That Ends Well")
            page.locator("#datasets-next").click()
            sync_api.expect(info).to_contain_text("Rows 101–200 of 254,070", timeout=15_000)
            sync_api.expect(page.locator("#datasets-table [data-testid='cell-0-0']")).to_have_text("100")
            page.locator("#datasets-search textarea, #datasets-search input").first.fill("wherefore art thou")
            page.locator("#datasets-apply").click()
            sync_api.expect(info).to_contain_text("matching", timeout=15_000)
            sync_api.expect(info).to_contain_text("Rows 1–2 of 2 matching", timeout=15_000)
            page.locator("#datasets-table [data-testid='cell-0-4']").click()  # column "text" of the first match
            cell = page.locator("#datasets-cell textarea")
            sync_api.expect(cell).to_have_value("O Romeo, Romeo! wherefore art thou Romeo?", timeout=15_000)
            if os.getenv("DATASETS_SCREENSHOT"):
                page.screenshot(path=os.environ["DATASETS_SCREENSHOT"], full_page=True)
            page.get_by_role("button", name="Send to Chat").click()
            page.get_by_role("tab", name="Chat").click()
            sync_api.expect(page.locator("#chat-prompt textarea")).to_have_value(
                "O Romeo, Romeo! wherefore art thou Romeo?", timeout=15_000)
        finally:
            chromium.close()
