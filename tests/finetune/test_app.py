"""The Fine-tune tab in the launched app: its API from gradio_client, and a person in headless Chromium."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from conftest import QA
from fakes import FakeTextEngine
from helpers import fake_services, make_config, start_app

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
    jobs = JobManager(Layout(config.data_dir / "finetune"), busy=lambda: services.registry.idle_seconds() < 1,
                      poll_s=0.2)
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
    url, base, data, _ = app
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
