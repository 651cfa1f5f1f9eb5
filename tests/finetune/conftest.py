"""Fixtures for the fine-tune tests: a job layout, a service over in-memory rows, a queue that ticks on demand."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engines.resolve import HubProbe, ModelResolver
from finetune.jobs import ACTIVE
from finetune.layout import Layout
from finetune.manager import JobManager
from finetune.service import FinetuneService

# a small task the tiny model can learn in a few steps: the answer is a fixed word per question
QA = [{"question": f"what is {w}?", "answer": f"{w} is {w}"} for w in
      ["paris", "rome", "dragon", "books", "hello", "world", "tiny", "numbers", "capital", "france", "italy",
       "small", "time", "read", "loved", "once"]]


class Rows:
    """Datasets by name, as the Datasets tab's sources would give them."""

    def __init__(self):
        self.tables: dict[str, list[dict]] = {"qa": QA}

    def __call__(self, source: str) -> tuple[list[str], list[dict]]:
        rows = self.tables[source]
        return (list(rows[0]) if rows else []), rows


@pytest.fixture(scope="session")
def layout(tmp_path_factory) -> Layout:
    return Layout(tmp_path_factory.mktemp("ft") / "finetune")


@pytest.fixture(scope="session")
def manager(layout):
    m = JobManager(layout, poll_s=0.2)
    yield m
    m.close(kill=True)


@pytest.fixture(scope="session")
def service(layout, manager, sharp_llama, models_root) -> FinetuneService:
    resolver = ModelResolver((models_root, layout.root), layout.root / "models", HubProbe(offline=True))
    return FinetuneService(layout, manager.store, resolver, Rows(), device=lambda: ("cpu", False))


@pytest.fixture(scope="session")
def finished(service, manager, sharp_llama):
    """One finished 12-step run on the QA rows (checkpoints at 6 and 12, validation on a quarter), shared."""
    from finetune.data import DataSpec
    from finetune.settings import TrainSettings

    settings = TrainSettings(max_steps=12, learning_rate=2e-2, batch_size=4, val_split=0.25, save_steps=6, threads=1)
    job, note = service.start(str(sharp_llama), DataSpec("qa", "instruction", "question", "answer", "chat"), settings)
    assert note.startswith(f"Job #{job.id} queued")
    job = wait_for(manager, job.id)
    assert job.status == "done", (job.message, runner_log(service.layout, job.id)[-3000:])
    return job


def wait_for(manager: JobManager, job_id: int, timeout: float = 120, until=None, interval: float = 0.2):
    """Tick the queue until the job leaves queued/running (or `until(job)` holds); returns the job."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        manager.tick()
        job = manager.store.get(job_id)
        if (until(job) if until else job.status not in ACTIVE):
            return job
        time.sleep(interval)
    raise AssertionError(f"job {job_id} still {manager.store.get(job_id).status} after {timeout} s: "
                         f"{manager.store.logs(job_id)[-5:]}")


def runner_log(layout: Layout, job_id: int) -> str:
    path = Path(layout.job_dir(job_id)) / "runner.log"
    return path.read_text() if path.exists() else ""
