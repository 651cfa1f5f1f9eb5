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
    adapter = service.adapters()[0]
    assert adapter["job"] == job.id

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
