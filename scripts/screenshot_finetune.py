"""Screenshot of the Fine-tune tab over an existing data directory (e.g. the one scripts/demo_finetune.py leaves),
so the picture shows a real run: its loss curves, progress and checkpoints.

    .venv/bin/python -m scripts.screenshot_finetune --data-dir /tmp/demo-finetune-XXXX [--out assets]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", default="assets")
    parser.add_argument("--port", type=int, default=7872)
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    import app
    from config import AppConfig

    config = AppConfig.from_args(["--port", str(args.port), "--offline", "--no-preload", "--data-dir", args.data_dir])
    services = app.build_services(config)
    demo = app.build_app(services)
    app.launch(services, demo, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{args.port}/", wait_until="load")
            page.get_by_role("tab", name="Fine-tune").click()
            expect(page.locator("#finetune-progress")).to_contain_text("done", timeout=30_000)
            expect(page.locator("#finetune-loss [aria-roledescription='line mark']").first).to_be_visible()
            page.wait_for_timeout(1500)
            path = Path(args.out) / "screenshot-finetune.png"
            page.screenshot(path=str(path), full_page=True)
            print(path)
            browser.close()
    finally:
        services.finetune_jobs.close()
        demo.close()


if __name__ == "__main__":
    main()
