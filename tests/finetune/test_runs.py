"""Training runs on the tiny random Llama, through the real queue and runner subprocess."""

from __future__ import annotations

import torch
from conftest import runner_log, wait_for

from finetune.data import DataSpec
from finetune.jobs import DONE
from finetune.settings import TrainSettings

SPEC = DataSpec("qa", "instruction", "question", "answer", "chat")


def test_a_few_steps_lower_the_loss_and_the_adapter_changes_the_output(service, manager, layout, sharp_llama):
    settings = TrainSettings(max_steps=12, learning_rate=2e-2, batch_size=4, val_split=0.25, lora_rank=8,
                             save_steps=6, threads=1)
    job, note = service.start(str(sharp_llama), SPEC, settings)
    assert note.startswith(f"Job #{job.id} queued")
    job = wait_for(manager, job.id)
    assert job.status == DONE, (job.message, runner_log(layout, job.id)[-3000:])
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

    settings = TrainSettings(max_steps=150, learning_rate=2e-2, batch_size=4, val_split=0, save_steps=5, threads=1)
    job, _ = service.start(str(sharp_llama), SPEC, settings)
    first = wait_for(manager, job.id, until=lambda j: bool(j.pid and layout.checkpoints(j.id)), interval=0.02)
    os.kill(first.pid, signal.SIGKILL)
    saved = layout.checkpoints(job.id)[-1][0]
    job = wait_for(manager, job.id)
    assert saved < 150 and job.status == DONE and job.step == 150, (job.message, runner_log(layout, job.id)[-3000:])
    lines = [line for _, line in manager.store.logs(job.id)]
    assert any(f"resuming from checkpoint-{saved}" in line for line in lines), lines
    assert job.attempts == 2
    steps = [s for s, kind, _ in manager.store.losses(job.id) if kind == "train"]
    assert steps == list(range(1, 151))  # every step once, the replayed ones overwritten


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
