"""The pieces of one run that do not know about jobs: tokenizing examples, the LoRA model, Trainer arguments."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from finetune.data import Example
from finetune.settings import TrainSettings


def read_examples(path: Path) -> list[Example]:
    with path.open(encoding="utf-8") as f:
        return [Example(**json.loads(line)) for line in f if line.strip()]


def write_examples(path: Path, examples: list[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with tmp.open("w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps({"prompt": e.prompt, "completion": e.completion}) + "\n")
    tmp.replace(path)


def tokenize(examples: list[Example], tokenizer: Any, cutoff: int) -> list[dict[str, list[int]]]:
    """input_ids and labels per example; the prompt's labels are -100 (no loss), the end past `cutoff` is cut."""
    rows = []
    for e in examples:
        prompt = tokenizer(e.prompt, add_special_tokens=False)["input_ids"] if e.prompt else []
        completion = tokenizer(e.completion, add_special_tokens=False)["input_ids"]
        ids = (prompt + completion)[:cutoff]
        labels = ([-100] * len(prompt) + completion)[:cutoff]
        if any(label != -100 for label in labels):  # a prompt that fills the cutoff leaves nothing to learn
            rows.append({"input_ids": ids, "labels": labels})
    return rows


def split(rows: list, val_split: float, seed: int) -> tuple[list, list]:
    """A seeded shuffle, then the last share for validation (same split on every resume)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    val = int(len(rows) * val_split) if val_split > 0 else 0
    train_ids, val_ids = order[:len(order) - val], order[len(order) - val:]
    return [rows[i] for i in train_ids], [rows[i] for i in val_ids]


def lora_model(model: Any, settings: TrainSettings) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=settings.targets(), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def steps_between(settings: TrainSettings, total_steps: int) -> tuple[int, int]:
    """(save_steps, eval_steps): about ten checkpoints over the run unless set."""
    save = settings.save_steps or max(1, total_steps // 10)
    return save, settings.eval_steps or save


def total_steps(settings: TrainSettings, train_rows: int) -> int:
    if settings.max_steps > 0:
        return settings.max_steps
    per_epoch = -(-train_rows // settings.batch_size)
    return max(1, int(settings.epochs * (-(-per_epoch // settings.grad_accum))))


def training_args(settings: TrainSettings, output_dir: Path, has_validation: bool, device: str, train_rows: int):
    from transformers import TrainingArguments

    save, evaluate = steps_between(settings, total_steps(settings, train_rows))
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size, gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.learning_rate, lr_scheduler_type=settings.scheduler, warmup_steps=settings.warmup_ratio,
        num_train_epochs=settings.epochs, max_steps=settings.max_steps or -1, seed=settings.seed,
        data_seed=settings.seed, logging_steps=1, logging_nan_inf_filter=False,  # a NaN must reach the callback
        save_strategy="steps", save_steps=save, eval_strategy="steps" if has_validation else "no",
        eval_steps=evaluate if has_validation else None, report_to=[], disable_tqdm=True,
        use_cpu=device == "cpu", bf16=settings.precision == "bfloat16", fp16=settings.precision == "float16",
        dataloader_num_workers=0, remove_unused_columns=False,
    )


def collator(tokenizer: Any):
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")


def ensure_pad(tokenizer: Any) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
