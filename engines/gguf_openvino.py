"""A GGUF file turned, once, into an OpenVINO model folder that loads in about two seconds.

OpenVINO GenAI reads GGUF files itself, but rebuilds the model from them at every load (4-8 s here). With
`enable_save_ov_model` it also writes what it built (`openvino_model.xml/.bin`, its tokenizer models) next to the
file it read: we point it at a link to the GGUF inside a folder of the data directory, so the folder gets them.

One repair on the way: for Q4_1 tensors (every layer of the embedded SmolLM2) the reader rounds each group's minimum
to a whole 4-bit zero point, while Q4_1's minimum is any float. On 761 tokens of Shakespeare that raised perplexity
from 905 (transformers' float32 dequantization of the same file) to 1209; with each zero point set back to the exact
`-min / scale` (float16) it is 906. The groups are found by their scales, which the reader keeps as they are.
The weights stay 4-bit: nothing is converted to float32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
from filelock import FileLock

from engines.embedded import Progress
from errors import UserError

logger = logging.getLogger(__name__)

# GGUF architectures OpenVINO GenAI 2026.4's reader builds (others: the torch engine, through transformers)
SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3")
COMPLETE = ".complete"


class GGUFError(UserError):
    """A GGUF file this engine cannot use; the message names the model, the problem and what to do."""


def read_header(path: Path, name: str, fix: str) -> tuple[str, object]:
    """Check that `path` is a whole GGUF file of a supported architecture; return (architecture, reader).

    Args:
        path: the GGUF file.
        name: the model as the person named it (for messages).
        fix: what to do about a damaged file (e.g. how to reinstall it).
    """
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError) as exc:  # what the reader raises on bad magic or a short file
        raise GGUFError(f"{name}: the GGUF file is damaged or truncated ({exc}); {fix}") from exc
    size = path.stat().st_size
    for tensor in reader.tensors:
        if tensor.data_offset + tensor.n_bytes > size:
            raise GGUFError(f"{name}: the GGUF file is truncated (tensor {tensor.name} ends after its {size} "
                            f"bytes); {fix}")
    field = reader.fields.get("general.architecture")
    arch = field.contents() if field is not None else "unknown"
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(f"{name}: the OpenVINO engine cannot run a {arch!r} GGUF (it runs "
                        f"{', '.join(SUPPORTED_ARCHITECTURES)}); start the app with --engine torch to load it "
                        f"through transformers, or pick a model of a supported architecture")
    return arch, reader


def folder_for(gguf: Path, models_dir: Path) -> Path:
    """Where the OpenVINO copy of a GGUF file lives: one folder per file (path, size and time of change)."""
    stat = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return models_dir / "openvino" / f"{gguf.stem}-{tag}"


def ensure_ir(gguf: Path, folder: Path, name: str, progress: Progress | None = None,
              fix: str = "download the file again") -> Path:
    """Return `folder` holding the OpenVINO model for `gguf`, building it first if needed (about 10 s, once).

    Raises:
        GGUFError: the file is damaged or of an architecture the engine cannot run (checked before any work).
    """
    if (folder / COMPLETE).is_file():
        return folder
    report = progress or (lambda f, m: logger.info("[%3.0f%%] %s", f * 100, m))
    report(0.0, f"checking {gguf.name}")
    _, reader = read_header(gguf, name, fix)  # before the lock: a refused file leaves nothing in the data directory
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / COMPLETE).is_file():  # another process finished it while we waited
            return folder
        start = time.perf_counter()
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            _build(gguf, tmp, reader, report)
        except OSError as exc:  # a full disk, most often: say so, leave nothing half-written behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise GGUFError(f"{name}: could not write the OpenVINO copy to {folder.parent} ({exc}); free some disk "
                            f"space (it needs about {2 * gguf.stat().st_size >> 20} MB) and load it again") from exc
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        report(1.0, f"prepared in {time.perf_counter() - start:.1f} s")
    prune_stale(folder.parent, keep=folder)
    return folder


def prune_stale(openvino_dir: Path, keep: Path) -> list[Path]:
    """Remove the prepared folders whose source is gone or has changed since; returns them.

    A folder is named after its source's path and time of change, so every new copy of a file (a reinstalled or
    upgraded package, a fresh virtual environment) gets a new folder, ~100 MB each for the embedded model: without
    this the data directory grew by one such folder per reinstall, never read again.
    """
    removed = []
    for marker in openvino_dir.glob(f"*/{COMPLETE}"):
        folder = marker.parent
        try:
            source = Path(json.loads(marker.read_text())["source"])
        except (OSError, ValueError, KeyError):
            continue  # not one of ours, or being written: leave it
        if folder == keep or _current(folder, source):
            continue
        with FileLock(str(folder) + ".lock"):
            shutil.rmtree(folder, ignore_errors=True)
        Path(str(folder) + ".lock").unlink(missing_ok=True)
        logger.info("removed %s: its source %s is gone or has changed", folder, source)
        removed.append(folder)
    return removed


def _current(folder: Path, source: Path) -> bool:
    """Whether `folder` is still the copy of `source`: it is there and, for a GGUF file, unchanged since."""
    if not source.exists():
        return False
    if source.is_file() and folder.name.startswith(source.stem + "-"):
        return folder_for(source, folder.parent.parent) == folder  # a new version of the file has a new folder
    return True  # a converted model's source folder (engines/hf_gguf.py): kept while the model is there


def _build(gguf: Path, tmp: Path, reader, report: Progress) -> None:
    import openvino as ov
    import openvino_genai as og
    from transformers import AutoConfig, AutoTokenizer

    link = tmp / "model.gguf"
    link.symlink_to(gguf.resolve())
    report(0.1, "building the OpenVINO model from the GGUF file (once)")
    scheduler = og.SchedulerConfig()
    scheduler.num_kv_blocks, scheduler.cache_size = 4, 0
    og.ContinuousBatchingPipeline(str(link), scheduler, "CPU", {"enable_save_ov_model": True})
    report(0.5, "restoring the Q4_1 zero points")
    model = ov.Core().read_model(tmp / "openvino_model.xml")
    fixed = restore_q4_1_zero_points(model, reader)
    ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)
    del model
    for suffix in (".xml", ".bin"):
        (tmp / f"model{suffix}").replace(tmp / f"openvino_model{suffix}")
    report(0.7, f"{fixed} weight groups repaired; saving the tokenizer and config")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
    ensure_tokenizer(tmp)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(tmp)
    link.unlink()
    types = Counter(t.tensor_type.name for t in reader.tensors)
    facts = {"source": str(gguf.resolve()), "weights": ", ".join(f"{k} x{v}" for k, v in types.most_common()),
             "main_type": types.most_common(1)[0][0], "parameters": int(sum(t.n_elements for t in reader.tensors))}
    (tmp / COMPLETE).write_text(json.dumps(facts))


def ensure_tokenizer(folder: Path) -> None:
    """Write the engine's own tokenizer models beside the model once: its structured output reads the vocabulary
    from them (without them every constrained request fails with \"the tokenizer has no vocabulary entries\")."""
    if (folder / "openvino_tokenizer.xml").exists() and (folder / "openvino_detokenizer.xml").exists():
        return
    import openvino as ov
    import openvino_tokenizers
    from transformers import AutoTokenizer

    tokenizer, detokenizer = openvino_tokenizers.convert_tokenizer(AutoTokenizer.from_pretrained(folder),
                                                                   with_detokenizer=True)
    for name, model in (("openvino_tokenizer", tokenizer), ("openvino_detokenizer", detokenizer)):
        ov.save_model(model, folder / f"{name}.tmp.xml")
        for suffix in (".xml", ".bin"):  # renamed last, so a half-written pair is never taken for a whole one
            (folder / f"{name}.tmp{suffix}").replace(folder / f"{name}{suffix}")


def facts(folder: Path) -> dict:
    """What the build recorded: the source file, its tensor types, the parameter count."""
    return json.loads((folder / COMPLETE).read_text())


def restore_q4_1_zero_points(model, reader) -> int:
    """Give every Q4_1 weight of `model` its exact zero points (see the module docstring); returns how many."""
    import openvino as ov
    from openvino import opset13

    tensors = _q4_1_tensors(reader)
    fixed = 0
    for node in model.get_ops():
        zp_node = _u4_zero_point(node)
        if zp_node is None:
            continue
        multiply = next(iter(node.output(0).get_target_inputs())).get_node()
        scales = multiply.input(1).get_source_output().get_node().get_data().astype(np.float16)
        rows = zp_node.get_output_shape(0)[0]
        found = _match(scales.reshape(rows, -1), tensors)
        if found is None:
            continue
        scale, minimum = found
        with np.errstate(divide="ignore", invalid="ignore"):
            zero = np.where(scale != 0, -minimum.astype(np.float32) / scale.astype(np.float32), 0)
        exact = opset13.constant(zero.astype(np.float16).reshape(zp_node.get_output_shape(0)), ov.Type.f16)
        node.input(1).replace_source_output(exact.output(0))
        fixed += 1
    model.validate_nodes_and_infer_types()
    return fixed


def _u4_zero_point(node):
    """The u4 zero-point constant of a weight decompression `Subtract`, else None."""
    if node.get_type_name() != "Subtract":
        return None
    convert = node.input(1).get_source_output().get_node()
    if convert.get_type_name() != "Convert":
        return None
    const = convert.input(0).get_source_output().get_node()
    import openvino as ov

    return const if const.get_type_name() == "Constant" and const.get_element_type() == ov.Type.u4 else None


def _q4_1_tensors(reader) -> list[tuple[np.ndarray, np.ndarray]]:
    """(scales, minimums) of each Q4_1 tensor, (rows, groups) float16: a block is scale, minimum, 16 bytes."""
    out = []
    for tensor in reader.tensors:
        if tensor.tensor_type.name != "Q4_1":
            continue
        rows = int(np.prod(tensor.shape[1:])) if len(tensor.shape) > 1 else 1
        blocks = np.asarray(tensor.data).reshape(-1, 20)
        scale = blocks[:, 0:2].copy().view(np.float16).reshape(rows, -1)
        minimum = blocks[:, 2:4].copy().view(np.float16).reshape(rows, -1)
        out.append((scale, minimum))
    return out


def _match(scales: np.ndarray, tensors: list[tuple[np.ndarray, np.ndarray]]):
    """The (scale, minimum) rows of the tensor whose scales these are, in the model's row order.

    The reader reorders the rows of attention's query and key weights (for its rotary layout), so rows are matched
    one by one, by their scales.
    """
    for scale, minimum in tensors:
        if scale.shape != scales.shape:
            continue
        if np.array_equal(scale, scales):
            return scale, minimum
        index = {row.tobytes(): i for i, row in enumerate(scale)}
        order = [index.get(row.tobytes()) for row in scales]
        if None not in order:
            return scale[order], minimum[order]
    return None
