"""LoRA adapters on the torch path: a folder with `adapter_config.json` names its base; the text engine loads the
base and merges the adapter into its weights, so an adapted model decodes (and batches) exactly as fast as its base.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SERVED_AS = "LoRA adapter merged on load (torch path)"  # what the Models tab says about an adapter


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def base_of(folder: Path) -> str:
    """The base model the adapter was trained on, as its config names it."""
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    base = (config.get("base_model_name_or_path") or "").strip()
    if not base:
        raise LookupError(f"the adapter {folder} does not name its base model (base_model_name_or_path is empty)")
    return base


def merge(model: Any, folder: str) -> Any:
    """`model` with the adapter in `folder` merged into its weights (a plain transformers model again)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, folder).merge_and_unload()
