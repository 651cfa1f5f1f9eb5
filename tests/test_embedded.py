"""The embedded SmolLM2 (real weights, offline): real answers from the engine, the API and a browser."""

from __future__ import annotations

import shutil
import time

import pytest
from gradio_client import Client
from helpers import make_config, message_text, start_app

from config import default_data_dir

pytestmark = pytest.mark.embedded
QUESTION = "What is the capital of France?"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def real_app(tmp_path_factory, models_root):
    from services import build_services

    # the converted copy lives in the default data dir, where `make test` prepared it
    config = make_config(tmp_path_factory.mktemp("real"), models_root, data_dir=default_data_dir(), preload=True)
    services = build_services(config)
    demo, url = start_app(services)
    yield services, url
    demo.close()
    services.cache.close()


def test_default_model_resolves_offline_to_the_embedded_copy(real_app):
    services, _ = real_app
    ref, gguf = services.catalog.default("chat"), services.text.uses_openvino()
    assert services.resolver.resolve(ref, gguf=gguf).source == ("embedded GGUF" if gguf else "embedded copy")
    services.text.load(ref)
    row = next(r for r in services.cache.rows() if r.key == ref)
    assert (row.engine, row.parameters) == ("openvino" if gguf else "torch", 134_515_008)


def test_openai_client_streams_paris_with_probabilities(real_app):
    import openai

    _, url = real_app
    api = openai.OpenAI(base_url=url + "v1", api_key="none", max_retries=0, timeout=60)
    stream = api.chat.completions.create(model="HuggingFaceTB/SmolLM2-135M-Instruct", stream=True, logprobs=True,
                                         messages=[{"role": "user", "content": QUESTION}], temperature=0,
                                         max_tokens=24)
    chunks = [c for c in stream if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    logprobs = [t.logprob for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert "Paris" in text and chunks[-1].choices[0].finish_reason == "stop"
    assert logprobs and all(lp <= 0 for lp in logprobs) and max(logprobs) > -0.1


def test_engine_answers_paris(real_app):
    from engines.params import GenerationParams

    services, _ = real_app
    updates = list(services.text.chat(services.catalog.default("chat"), [{"role": "user", "content": QUESTION}],
                                      GenerationParams(temperature=0, max_new_tokens=24)))
    reply = "".join(u.delta for u in updates)
    assert "Paris" in reply, reply
    assert updates[-1].stats.finish_reason == "eos"


def test_api_chat_answers_paris(real_app):
    _, url = real_app
    history = Client(url, verbose=False).predict(QUESTION, temperature=0, max_new_tokens=24, api_name="/chat")
    assert "Paris" in message_text(history[-1])


def test_api_completion_continues_a_fact(real_app):
    _, url = real_app
    text = Client(url, verbose=False).predict("The capital of France is", "\\n", temperature=0,
                                              max_new_tokens=8, api_name="/generate")
    assert "Paris" in text, text


def open_chat(p, url: str):
    """Headless Chromium on the app's page, ready to type: (browser, page, message box)."""
    from playwright.sync_api import expect

    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url, wait_until="load")
    box = page.locator("#chat-message textarea")
    expect(box).to_be_visible(timeout=30_000)
    return browser, page, box


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM),
                    reason="Debian chromium is not installed (make browser-deps)")
def test_browser_user_types_a_question_and_sees_paris(real_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    _, url = real_app
    with sync_playwright() as p:
        browser, page, box = open_chat(p, url)
        temperature = page.get_by_label("number input for Temperature").first
        temperature.fill("0")  # greedy, so the answer is the model's best one
        temperature.press("Tab")
        box.fill(QUESTION)
        box.press("Enter")
        bot = page.locator(".bot, [data-testid='bot']").last
        expect(bot).to_contain_text("Paris", timeout=60_000)
        expect(page.locator("#chat-info")).to_contain_text("tokens/s", timeout=30_000)
        page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
        page.get_by_role("tab", name="History").click()  # the exchange is in this browser's history
        expect(page.get_by_text(QUESTION).locator("visible=true").first).to_be_visible(timeout=30_000)
        browser.close()


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM),
                    reason="Debian chromium is not installed (make browser-deps)")
def test_closing_the_tab_mid_reply_frees_its_place_in_the_batch(real_app):
    from playwright.sync_api import expect, sync_playwright

    services, url = real_app
    batcher = services.text.load(services.catalog.default("chat")).batcher
    with sync_playwright() as p:
        browser, page, box = open_chat(p, url)
        length = page.get_by_label("number input for Max new tokens").locator("visible=true")
        length.fill("1500")  # far longer than the test lasts
        length.press("Tab")
        box.fill("Write a very long story about a dragon, with many chapters.")
        box.press("Enter")
        expect(page.locator(".bot")).not_to_have_text("", timeout=30_000)  # the reply is streaming
        assert batcher.stats().running == 1
        page.close()  # the person closes the tab
        deadline = time.monotonic() + 1.0
        while batcher.stats().running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert batcher.stats().running == 0
        browser.close()
