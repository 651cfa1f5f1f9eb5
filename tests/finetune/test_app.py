"""The Fine-tune tab in the launched app: its API from gradio_client, and a person in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from conftest import QA
from fakes import FakeTextEngine
from gradio_client import Client
from gradio_client.exceptions import AppError
from helpers import fake_services, make_config, start_app

from ui.finetune_handlers import FinetuneDeps
from ui.finetune_tab import model_lists

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def app(tmp_path_factory, models_root, sharp_llama):
    from engines.resolve import HubProbe, ModelResolver
    from finetune.layout import Layout
    from finetune.manager import JobManager
    from finetune.service import FinetuneService, rows_from_browser

    config = make_config(tmp_path_factory.mktemp("ftapp"), models_root)
    services = fake_services(config, FakeTextEngine())
    hold = threading.Event()  # stands for "someone is generating": the runner pauses between steps
    jobs = JobManager(Layout(config.data_dir / "finetune"), busy=hold.is_set, poll_s=0.1)
    services.hold = hold
    resolver = ModelResolver(config.readable_dirs, config.models_dir, HubProbe(offline=True))
    services.finetune = FinetuneService(jobs.layout, jobs.store, resolver, rows_from_browser(services.datasets),
                                        lambda: ("cpu", False))
    services.finetune_jobs = jobs
    data = models_root / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in QA))
    demo, url = start_app(services)
    yield url, str(sharp_llama), str(data), services
    jobs.close(kill=True)
    demo.close()


def wait_status(client: Client, job_id: int, statuses: set[str], timeout: float = 90) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        view = client.predict(job_id, api_name="/finetune_status")
        if view["status"] in statuses:
            return view
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} is still {view['status']}: {view['log'][-5:]}")


def test_the_api_starts_watches_lists_and_refuses_clearly(app):
    url, base, data, services = app
    client = Client(url, verbose=False)
    started = client.predict(data, base=base, settings={"max_steps": 6, "learning_rate": 0.02, "threads": 1},
                             api_name="/finetune_start")
    assert started["status"] in {"queued", "running"} and started["data"]["kind"] == "instruction"
    assert started["data"]["prompt_column"] == "question" and started["data"]["response_column"] == "answer"
    view = wait_status(client, started["job_id"], {"done", "failed"})
    assert view["status"] == "done", view["log"]
    assert len(view["train_loss"]) == 6
    adapters = client.predict(api_name="/finetune_adapters")
    assert adapters[0]["job"] == started["job_id"] and adapters[0]["label"].startswith(f"{base} + ")
    deps = FinetuneDeps(service=services.finetune, rows=services.finetune.rows, catalog=services.catalog,
                        upload=None, layout=services.finetune.layout, samples=[])
    chat_models, text_models = model_lists(("chat", "text-generation"), deps=deps)  # what a page load shows
    assert (adapters[0]["label"], adapters[0]["ref"]) in chat_models.choices
    assert (adapters[0]["label"], adapters[0]["ref"]) in text_models.choices
    with pytest.raises(AppError, match="no column 'nope'"):
        client.predict(data, base=base, kind="text", prompt_column="nope", api_name="/finetune_start")
    one_row = Path(data).with_name("one-row.jsonl")
    one_row.write_text(json.dumps(QA[0]) + "\n")
    with pytest.raises(AppError, match="too small for a 50% validation split: 1 example"):
        client.predict(str(one_row), base=base, settings={"val_split": 0.5}, api_name="/finetune_start")
    with pytest.raises(AppError, match="cannot train on this cpu"):
        client.predict(data, base=base, settings={"precision": "bfloat16"}, api_name="/finetune_start")
    with pytest.raises(AppError, match="is done; only a queued or running job can be stopped"):
        client.predict(started["job_id"], api_name="/finetune_stop")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_a_person_starts_a_job_watches_the_loss_plot_grow_and_reloads(app):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs `pip install playwright`")
    url, base, data, services = app
    store = services.finetune.store

    before = len(store.list())

    def pause_after_a_few_steps():  # holds the run mid-way, as a person generating would, so the page sees it
        while len(store.list()) == before or store.list()[0].step < 5:
            time.sleep(0.01)
        services.hold.set()

    threading.Thread(target=pause_after_a_few_steps, daemon=True).start()
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url, wait_until="load")
            page.get_by_role("tab", name="Fine-tune").click()
            _fill_dropdown(page, "Base model", base)
            _fill_dropdown(page, "Dataset", data)
            response = page.get_by_label("Response column")
            sync_api.expect(response).to_have_value("answer", timeout=15_000)  # columns guessed from the file
            page.get_by_role("button", name="Training settings").click()
            _fill_number(page, "Max steps", "120")
            _fill_number(page, "CPU threads", "1")  # Chromium needs the other core
            _fill_number(page, "Learning rate", "0.02")
            _fill_number(page, "Checkpoint every N steps", "50")
            sync_api.expect(page.get_by_label("Max steps", exact=True)).to_have_value("120")
            page.locator("#finetune-start").click()
            progress = page.locator("#finetune-progress")
            sync_api.expect(progress).to_contain_text("running", timeout=30_000)
            plot = page.locator("#finetune-loss")
            sync_api.expect(plot.locator("canvas, svg").first).to_be_visible(timeout=30_000)
            early = _wait_plotted_until(plot, lambda n: n >= 5)  # points while the job runs (held)
            assert "running" in progress.inner_text() and early < 120
            page.reload(wait_until="load")  # a reload finds the running job, its curve and its progress again
            page.get_by_role("tab", name="Fine-tune").click()
            sync_api.expect(progress).to_contain_text("running", timeout=15_000)
            assert _wait_plotted_until(plot, lambda n: n >= early) == early
            services.hold.clear()
            sync_api.expect(progress).to_contain_text("done", timeout=90_000)
            assert _wait_plotted_until(plot, lambda n: n >= 120) > early
            lines = plot.locator("[aria-roledescription='line mark']")
            sync_api.expect(lines).to_have_count(2)  # train and validation, each drawn in its colour
            assert [lines.nth(i).get_attribute("stroke") for i in range(2)] == ["#4c78a8", "#f58518"]
            if os.getenv("FINETUNE_SCREENSHOT"):
                page.screenshot(path=os.environ["FINETUNE_SCREENSHOT"], full_page=True)
        finally:
            chromium.close()


def _fill_dropdown(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


def _fill_number(page, label: str, value: str) -> None:
    """Type a number the way a person does; again if the box was re-rendered under the typing (an accordion's
    contents mount after it opens, later on a busy machine, and a new input starts from the default)."""
    box = page.get_by_label(label, exact=True)
    for _ in range(20):
        box.fill(value)
        box.press("Tab")
        time.sleep(0.1)
        if box.input_value() == value:
            return
    raise AssertionError(f"{label} kept {box.input_value()!r} instead of {value!r}")


def _wait_plotted_until(plot, condition, timeout: float = 60) -> int:
    """The last step on the plot's x axis (vega names its range in the axis' aria-label), once `condition` holds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        label = plot.locator("[aria-roledescription='axis']").first.get_attribute("aria-label") or ""
        found = re.search(r"values from [\d.]+ to ([\d.]+)", label)
        if found and condition(int(float(found.group(1)))):
            return int(float(found.group(1)))
        time.sleep(0.2)
    raise AssertionError(f"the loss plot did not get there: {label!r}")
