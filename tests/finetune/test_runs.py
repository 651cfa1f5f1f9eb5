"""Training runs on the tiny random Llama, through the real queue and runner subprocess."""

from __future__ import annotations

import torch
from conftest import runner_log, wait_for

from finetune.data import DataSpec
from finetune.jobs import DONE
from finetune.settings import TrainSettings

SPEC = DataSpec("qa", "instruction", "question", "answer", "chat")


def test_a_few_steps_lower_the_loss_and_the_adapter_changes_the_output(finished, service, manager, layout,
                                                                       sharp_llama):
    job = finished
    train = [v for _, kind, v in manager.store.losses(job.id) if kind == "train"]
    assert len(train) == 12 and sum(train[-3:]) / 3 < sum(train[:3]) / 3 * 0.8, train
    assert [s for s, _ in layout.checkpoints(job.id)] == [6, 12]
    adapter = next(a for a in service.adapters() if a["job"] == job.id)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sharp_llama)
    base = AutoModelForCausalLM.from_pretrained(sharp_llama, dtype=torch.float32).eval()
    ids = tok("what is rome?", return_tensors="pt").input_ids
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, adapter["ref"]).eval()
        after = tuned(ids).logits
    assert (after - before).abs().max() > 1e-2


def test_a_job_killed_with_sigkill_resumes_from_its_last_checkpoint(service, manager, layout, sharp_llama):
    import os
    import signal

    settings = TrainSettings(max_steps=60, learning_rate=2e-2, batch_size=4, val_split=0, save_steps=3, threads=1)
    job, _ = service.start(str(sharp_llama), SPEC, settings)
    first = wait_for(manager, job.id, until=lambda j: bool(j.pid and layout.checkpoints(j.id)), interval=0.02)
    os.kill(first.pid, signal.SIGKILL)
    saved = layout.checkpoints(job.id)[-1][0]
    job = wait_for(manager, job.id)
    assert saved < 60 and job.status == DONE and job.step == 60, (job.message, runner_log(layout, job.id)[-3000:])
    lines = [line for _, line in manager.store.logs(job.id)]
    assert any(f"resuming from checkpoint-{saved}" in line for line in lines), lines
    assert job.attempts == 2
    steps = [s for s, kind, _ in manager.store.losses(job.id) if kind == "train"]
    assert steps == list(range(1, 61))  # every step once, the replayed ones overwritten


def test_a_nan_loss_stops_the_job_with_a_message(service, manager, layout, sharp_llama, tmp_path, models_root):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = models_root / "nan-llama"
    if not broken.exists():
        model = AutoModelForCausalLM.from_pretrained(sharp_llama)
        with torch.no_grad():
            model.model.norm.weight[0] = float("nan")  # every logit becomes NaN, as after a diverged update
        model.save_pretrained(broken)
        AutoTokenizer.from_pretrained(sharp_llama).save_pretrained(broken)
    job, _ = service.start(str(broken), SPEC, TrainSettings(max_steps=6, batch_size=4, val_split=0, threads=1,
                                                            save_steps=1))
    job = wait_for(manager, job.id)
    assert job.status == "failed"
    assert "the train loss became nan at step 1" in job.message
    assert layout.checkpoints(job.id) == []  # NaN weights are never saved as a checkpoint
    assert job.id not in [a["job"] for a in service.adapters()]


def test_a_new_app_process_adopts_a_running_job_instead_of_starting_it_again(service, layout, sharp_llama):
    import threading
    import time

    from finetune.manager import JobManager

    first = JobManager(layout)
    settings = TrainSettings(max_steps=150, learning_rate=2e-2, batch_size=4, val_split=0, save_steps=50, threads=1)
    job, _ = service.start(str(sharp_llama), SPEC, settings)
    generating = threading.Event()

    def someone_generates():  # keeps the runner paused between steps while the app "restarts"
        while generating.is_set():
            layout.busy_file.touch()
            time.sleep(0.1)

    running = wait_for(first, job.id, until=lambda j: j.pid and j.step >= 1, interval=0.01)
    generating.set()
    threading.Thread(target=someone_generates, daemon=True).start()
    first.close()  # the app exits; the runner goes on (its own session)
    second = JobManager(layout)
    second.tick()
    time.sleep(0.5)
    second.tick()
    paused = second.store.get(job.id)
    assert paused.status == "running" and paused.step < 150  # still mid-run, held by the busy file
    assert paused.pid == running.pid and second.running_pid() is None  # adopted, not started again
    generating.clear()
    job = wait_for(second, job.id)
    second.close()
    assert job.status == DONE and job.step == 150 and job.attempts == 1
    assert sum("runner started" in line for _, line in second.store.logs(job.id, last=1000)) == 1
