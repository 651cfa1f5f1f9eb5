"""A user in headless Chromium types a prompt, presses Generate and sees the generated images."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (make browser-deps)")
def test_browser_user_generates_and_sees_the_image(image_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(image_app, wait_until="load")
            box = page.locator("#t2i-prompt textarea")
            expect(box).to_be_visible(timeout=30_000)
            box.fill("a large blue square in the center on a white background")
            page.locator("#t2i-generate").click()
            image = page.locator("#t2i-gallery img[src*='/gradio_api/file=']").first
            expect(image).to_be_visible(timeout=60_000)
            src = image.get_attribute("src")
            assert src.split("?")[0].endswith(".png")
            # the image really is an image with a drawn shape: fetch it through the page's own origin
            body = page.request.get(src if src.startswith("http") else image_app.rstrip("/") + src).body()
            (tmp_path / "seen.png").write_bytes(body)
            x = np.asarray(Image.open(tmp_path / "seen.png").convert("RGB"), dtype=np.int16)
            assert x.shape == (64, 64, 3) and x.std() > 10
            expect(page.get_by_label("Seed used")).not_to_have_value("", timeout=10_000)
        finally:
            browser.close()
