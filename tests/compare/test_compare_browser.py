"""Headless Chromium: a side-by-side comparison streams into both columns, and an arena vote reveals the names."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fakes import FakeTextEngine
from helpers import fake_services, make_config, start_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
POOL = ["alpha-secret-model", "beta-secret-model"]
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(),
                                                      reason="needs Chromium at /usr/bin/chromium (make browser-deps)")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, models_root):
    engine = FakeTextEngine(reply="Paris is the capital of France and a fine city", delay=0.02)
    services = fake_services(make_config(tmp_path_factory.mktemp("compare-browser"), models_root), engine)
    demo, url = start_app(services)
    yield url
    demo.close()


def test_side_by_side_a_vote_and_an_evaluation_in_the_browser(app_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs `pip install playwright`")
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(app_url, wait_until="load")
            page.get_by_role("tab", name="Compare").click()
            page.locator("#compare-prompt textarea").fill("What is the capital of France?")
            page.locator("#compare-send").click()
            for i in range(2):
                expect(page.locator(f"#compare-chat-{i}")).to_contain_text("a fine city", timeout=20_000)
                expect(page.locator(f"#compare-stats-{i}")).to_contain_text("tokens/s", timeout=10_000)
            expect(page.locator("#compare-stats-0")).to_contain_text("seed")
            if os.getenv("COMPARE_SCREENSHOT"):
                page.screenshot(path=os.environ["COMPARE_SCREENSHOT"], full_page=True)

            page.get_by_role("tab", name="Arena").click()
            pool = page.locator("#arena-pool input")
            for name in POOL:
                pool.fill(name)
                pool.press("Enter")
            page.locator("#arena-prompt textarea").fill("Name a city.")
            page.locator("#arena-go").click()
            expect(page.locator("#arena-chat-a")).to_contain_text("a fine city", timeout=20_000)
            expect(page.locator("#arena-chat-b")).to_contain_text("a fine city", timeout=20_000)
            vote = page.locator("#arena-vote-model_b")
            expect(vote).to_be_enabled(timeout=10_000)
            answers = page.locator("#arena-chat-a").inner_text() + page.locator("#arena-chat-b").inner_text()
            assert not any(name in answers + page.locator("#arena-reveal").inner_text() for name in POOL)
            vote.click()
            reveal = page.locator("#arena-reveal")
            expect(reveal).to_contain_text("A was", timeout=10_000)
            assert all(name in reveal.inner_text() for name in POOL)
            expect(page.locator("#arena-board")).to_contain_text("secret-model", timeout=10_000)
            if os.getenv("ARENA_SCREENSHOT"):
                page.screenshot(path=os.environ["ARENA_SCREENSHOT"], full_page=True)
            evaluate_an_upload(page, expect, tmp_path)
        finally:
            browser.close()


def evaluate_an_upload(page, expect, tmp_path: Path) -> None:
    """Upload a JSONL file of questions and answers, run it, and see the per-model summary."""
    prompts = tmp_path / "qa.jsonl"
    prompts.write_text('{"question": "Capital of France?", "answer": "Paris"}\n'
                       '{"question": "Capital of Italy?", "answer": "Rome"}\n')
    page.get_by_role("tab", name="Evaluation").click()
    page.locator("#eval-upload input[type=file]").set_input_files(str(prompts))
    expect(page.locator("#eval-source textarea, #eval-source input").first).to_have_value(
        re.compile("^upload:"), timeout=15_000)
    page.locator("#eval-prompt-column textarea, #eval-prompt-column input").first.fill("question")
    page.locator("#eval-reference-column textarea, #eval-reference-column input").first.fill("answer")
    page.locator("#eval-start").click()
    expect(page.locator("#eval-progress")).to_contain_text("done", timeout=20_000)
    expect(page.locator("#eval-progress")).to_contain_text("2 / 2 results")
    expect(page.locator("#eval-summary")).to_contain_text("rouge_l", timeout=10_000)
    if os.getenv("EVAL_SCREENSHOT"):
        page.screenshot(path=os.environ["EVAL_SCREENSHOT"], full_page=True)
