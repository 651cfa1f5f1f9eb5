"""Take the README screenshots: launch the app on the embedded models, use each tab as a person would, save PNGs.

    python scripts/screenshots.py [--out assets]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def start_app(port: int):
    """The app on the embedded models, its chat model loaded up front so that the first answer is not a load."""
    import app
    from config import AppConfig

    config = AppConfig.from_args(["--port", str(port), "--offline"])
    services = app.build_services(config)
    demo = app.build_app(services)
    app.launch(services, demo, block=False)
    services.text.load(services.catalog.default("chat"))
    return demo


def use_chat(page) -> None:
    from playwright.sync_api import expect

    box = page.locator("#chat-message textarea")
    expect(box).to_be_visible(timeout=30_000)
    temperature = page.get_by_label("number input for Temperature").first
    temperature.fill("0")
    temperature.press("Tab")
    for i, question in enumerate(("What is the capital of France?", "What is the capital of Italy?")):
        before = page.locator("#chat-info").inner_text()
        box.fill(question)
        box.press("Enter")
        expect(page.locator(".bot")).to_have_count(i + 1, timeout=30_000)
        expect(page.locator("#chat-info")).to_contain_text("tokens/s", timeout=60_000)
        expect(page.locator("#chat-info")).not_to_have_text(before, timeout=60_000)
        page.wait_for_timeout(500)


def use_text(page) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Text generation").click()
    prompt = page.locator("#gen-prompt textarea")
    prompt.fill("The three primary colours are")
    page.get_by_label("Colour tokens by probability").check()
    length = page.get_by_label("number input for Max new tokens").locator("visible=true")
    length.fill("40")
    length.press("Tab")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-details")).to_contain_text("tokens/s", timeout=60_000)


def use_history(page) -> None:
    page.get_by_role("tab", name="History").click()
    page.wait_for_timeout(2500)


def use_datasets(page) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Datasets").click()
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.locator("#datasets-table")).to_contain_text("play", timeout=60_000)
    page.wait_for_timeout(1000)


def use_index(page) -> None:
    """A collection of Shakespeare's lines (a new name each run: the data folder is the user's), searched."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Index").click()
    name = f"shakespeare-{int(time.time())}"
    page.get_by_label("Name", exact=True).locator("visible=true").fill(name)
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#index-status")).to_contain_text(name, timeout=30_000)
    page.get_by_text("Index a dataset column").click()
    page.get_by_placeholder("sample:shakespeare, hub:<id> or a path").fill("sample:shakespeare")
    page.get_by_label("Text column").locator("visible=true").fill("text")
    page.get_by_label("Max rows").locator("visible=true").fill("400")
    page.get_by_role("button", name="Index column").click()
    # every line embedded (the status line polls), so that meaning search covers them all
    expect(page.locator("#index-status")).to_contain_text(re.compile(r"[1-9][\d,]* documents · ready"),
                                                          timeout=180_000)
    page.get_by_text("Index a dataset column").click()  # folded again, so that the results are in view
    page.locator("#index-query textarea").fill("grief for a father who died")
    page.locator("#index-search").click()
    page.wait_for_timeout(4000)
    page.locator("#index-results").scroll_into_view_if_needed()


def use_models(page) -> None:
    page.get_by_role("tab", name="Models").click()
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_timeout(1500)


# in this order: the history shot shows the chat and the generation made before it
SHOTS = {"chat": use_chat, "text": use_text, "history": use_history, "datasets": use_datasets, "index": use_index,
         "models": use_models}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "assets"))
    parser.add_argument("--port", type=int, default=7871)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    demo = start_app(args.port)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"http://127.0.0.1:{args.port}/", wait_until="load")
        for name, use_tab in SHOTS.items():
            use_tab(page)
            page.screenshot(path=str(out / f"screenshot-{name}.png"))
        browser.close()
    demo.close()
    print("\n".join(str(p) for p in sorted(out.glob("screenshot-*.png"))))


if __name__ == "__main__":
    tempfile.tempdir = tempfile.mkdtemp()
    main()
