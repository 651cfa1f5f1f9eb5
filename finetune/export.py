"""A checkpoint's adapter: evaluated on the job's validation rows, merged into the base and saved, or zipped."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from errors import UserError
from finetune import training
from finetune.jobs import Job, JobStore
from finetune.modelcard import write_card
from finetune.settings import TrainSettings

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
DOWNLOADS = Path(tempfile.gettempdir()) / "playground-finetune-downloads"  # gradio serves files from the temp dir


def load_with_adapter(job: Job, checkpoint: Path, merge: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer): the job's base in float32 with the checkpoint's adapter, merged into it if asked."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location, local_only = job.data["base_location"], job.data.get("local_only", True)
    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
    base = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32, local_files_only=local_only)
    model = PeftModel.from_pretrained(base, str(checkpoint))
    model = model.merge_and_unload() if merge else model
    return model.eval(), tokenizer


def evaluate(job: Job, checkpoint: Path) -> float:
    """The validation loss of a checkpoint, computed the way the run computes it (Trainer.evaluate)."""
    from transformers import Trainer

    settings = TrainSettings.from_dict(job.settings)
    model, tokenizer = load_with_adapter(job, checkpoint)
    training.ensure_pad(tokenizer)
    rows = training.tokenize(training.read_examples(Path(job.data["examples_file"])), tokenizer,
                             settings.cutoff_len)
    _, val_rows = training.split(rows, settings.val_split, settings.seed)
    if not val_rows:
        raise UserError(f"job #{job.id} has no validation rows (its validation split is {settings.val_split:g}); "
                        f"start a run with a validation split to evaluate")
    with tempfile.TemporaryDirectory() as tmp:
        args = training.training_args(settings, Path(tmp), True, "cpu", len(rows))
        trainer = Trainer(model=model, args=args, eval_dataset=val_rows, data_collator=training.collator(tokenizer))
        return float(trainer.evaluate()["eval_loss"])


def merge_and_export(job: Job, checkpoint: Path, dest: Path, store: JobStore) -> Path:
    """Merge the adapter into the base weights and save a plain safetensors model folder with a model card."""
    step = int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint.name.startswith("checkpoint-") else job.step
    model, tokenizer = load_with_adapter(job, checkpoint, merge=True)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_card(tmp, job, store.losses(job.id), step=step, merged=True)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def adapter_zip(job: Job, checkpoint: Path, store: JobStore) -> Path:
    """A zip of the checkpoint's adapter (config naming the base as given, weights, model card) for download."""
    step = int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint.name.startswith("checkpoint-") else job.step
    folder = DOWNLOADS / f"job{job.id}-{step}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    present = [name for name in ADAPTER_FILES if (checkpoint / name).is_file()]
    if "adapter_config.json" not in present:
        raise UserError(f"{checkpoint.name} of job #{job.id} holds no adapter (no adapter_config.json)")
    for name in present:
        shutil.copy2(checkpoint / name, folder / name)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = job.base
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    write_card(folder, job, store.losses(job.id), step=step)
    archive = DOWNLOADS / f"{_safe(job.name)}-job{job.id}-step{step}-adapter.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.iterdir()):
            z.write(path, path.name)
    shutil.rmtree(folder, ignore_errors=True)
    return archive


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:60] or "adapter"
