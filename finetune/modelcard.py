"""The README.md that goes with an adapter or a merged export: base, data, settings, losses."""

from __future__ import annotations

import json
import time
from pathlib import Path

from finetune.jobs import Job


def write_card(folder: Path, job: Job, losses: list[tuple[int, str, float]], step: int, merged: bool = False) -> Path:
    """Write `folder/README.md` describing how the weights there were made."""
    data = {k: v for k, v in job.data.items() if k not in {"base_location", "local_only"}}
    last = {kind: value for _, kind, value in losses}
    what = "the base model with a LoRA adapter merged into its weights" if merged else "a LoRA adapter (PEFT)"
    lines = [
        "---", f"base_model: {job.base}", "library_name: " + ("transformers" if merged else "peft"),
        "tags: [lora, hf-playground]", "---", "",
        f"# {job.name}", "",
        f"{what.capitalize()}, fine-tuned in the Hugging Face models playground (job #{job.id}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", "",
        f"- **Base model:** `{job.base}`",
        f"- **Steps:** {step}" + (f" (checkpoint-{step})" if merged else ""),
        "- **Last losses:** " + (", ".join(f"{k} {v:.4f}" for k, v in last.items()) or "none logged"), "",
        "## Data", "", "```json", json.dumps(data, indent=2), "```", "",
        "## Settings", "", "```json", json.dumps(job.settings, indent=2), "```", "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
