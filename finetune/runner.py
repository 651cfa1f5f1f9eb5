"""One training run, in its own process: `python -m finetune.runner <finetune dir> <job id>`.

A subprocess keeps the app and its loaded models out of harm's way (its memory goes back to the system when it
ends, a crash or SIGKILL only ends the run), and lets the run keep a lower CPU priority than the app's generations.
The run resumes from the job's last complete checkpoint when there is one, so a killed run loses at most the steps
since that checkpoint and finishes with the same step count.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
import traceback
from pathlib import Path

from finetune import training
from finetune.callbacks import JobCallback
from finetune.jobs import DONE, FAILED, STOPPED, Job, JobStore
from finetune.layout import Layout
from finetune.modelcard import write_card
from finetune.settings import TrainSettings

logger = logging.getLogger("finetune.runner")
NICE = 10  # below the app's generations: the kernel gives a chat's threads the cores first


def run(layout: Layout, job_id: int) -> str:
    """Train job `job_id` to the end (or to a stop request / NaN); returns the final status."""
    store = JobStore(layout.db)
    job = store.get(job_id)
    try:
        status, message = _train(store, layout, job)
    except Exception as exc:  # the job says what failed; the app stays up whatever the run does
        status, message = FAILED, f"{type(exc).__name__}: {exc}"
        store.log(job_id, traceback.format_exc(limit=8))
    store.finish(job_id, status, message)
    return status


def _train(store: JobStore, layout: Layout, job: Job) -> tuple[str, str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

    settings = TrainSettings.from_dict(job.settings)
    torch.set_num_threads(settings.threads or os.cpu_count() or 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    location, local_only = job.data["base_location"], job.data.get("local_only", True)
    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
    training.ensure_pad(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32, local_files_only=local_only)
    model = training.lora_model(model, settings)
    rows = training.tokenize(training.read_examples(Path(job.data["examples_file"])), tokenizer, settings.cutoff_len)
    train_rows, val_rows = training.split(rows, settings.val_split, settings.seed)
    tokens_per_step = (sum(len(r["input_ids"]) for r in train_rows) / max(1, len(train_rows))
                       * settings.batch_size * settings.grad_accum)
    callback = JobCallback(store, job.id, tokens_per_step, layout.busy_file)
    args = training.training_args(settings, layout.checkpoints_dir(job.id), bool(val_rows), device, len(train_rows))
    trainer = Trainer(model=model, args=args, train_dataset=train_rows, eval_dataset=val_rows or None,
                      data_collator=training.collator(tokenizer), callbacks=[callback])
    found = layout.checkpoints(job.id)  # after a kill, an app restart, a stop, or a chosen checkpoint
    resume = str(found[-1][1]) if found else None
    store.log(job.id, f"training on {len(train_rows)} examples, validating on {len(val_rows)}, on {device} "
                      f"({settings.precision}, {torch.get_num_threads()} threads)"
              + (f"; resuming from {Path(resume).name}" if resume else ""))
    output = trainer.train(resume_from_checkpoint=resume)
    store.update(job.id, tokens_per_s=_tokens_per_s(output.metrics, callback, trainer.state.global_step))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux
    store.log(job.id, f"peak memory of the run: {peak:.2f} GB; trained {output.metrics['train_runtime']:.0f} s")
    if callback.nan_message:
        return FAILED, callback.nan_message
    if callback.stopped:
        return STOPPED, f"stopped at step {trainer.state.global_step}; resume from its checkpoint to go on"
    adapter = layout.adapter(job.id)
    trainer.model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    _point_at_base(adapter, job.base)
    write_card(adapter, job, store.losses(job.id), step=trainer.state.global_step)
    return DONE, f"finished {trainer.state.global_step} steps; the adapter is {adapter}"


def _tokens_per_s(metrics: dict, callback: JobCallback, step: int) -> float:
    """Tokens per second of training (pauses for generations left out), over this process's part of the run."""
    runtime = max(1e-6, metrics["train_runtime"] - callback.paused_s)
    return (step - callback._first_step) * callback.tokens_per_step / runtime


def _point_at_base(adapter: Path, base: str) -> None:
    """Name the base as the person gave it (hub id or folder), so the adapter resolves like any model does."""
    import json

    path = adapter / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base
    path.write_text(json.dumps(config, indent=2))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        os.nice(NICE)
    except OSError:  # not permitted: run at normal priority, pausing between steps still yields
        pass
    start = time.perf_counter()
    status = run(Layout(Path(argv[0])), int(argv[1]))
    logger.info("job %s %s after %.1f s", argv[1], status, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
