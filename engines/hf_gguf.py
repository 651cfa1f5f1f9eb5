"""A transformers model folder written as a quantized GGUF file, for the OpenVINO engine to read.

Why GGUF: the engine builds its model from a GGUF file itself (engines/gguf_openvino.py), while the tool made for
exporting transformers models to OpenVINO (optimum-intel 2.2) requires transformers < 5.6 and huggingface-hub < 1.22,
which this app's transformers 5 and hub 2 rule out (and optimum-intel 1.15 fails to import with optimum 2.3). The
`gguf` library (llama.cpp's own Python package) gives the tensor names, the quantizers and the writer; this module
only maps a config and a tokenizer onto it, as llama.cpp's convert_hf_to_gguf.py does for these architectures.

int4 is Q4_1 (4-bit with a minimum per group of 32; engines/gguf_openvino.py restores its exact zero points), int8
is Q8_0. The token embedding stays Q8_0 in both (as llama.cpp's own Q4_1 files have it), norms stay float32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np

from engines.embedded import Progress
from errors import UserError

logger = logging.getLogger(__name__)
WEIGHTS = {"int4": "Q4_1", "int8": "Q8_0"}
# transformers model types the OpenVINO engine's GGUF reader builds, as GGUF architecture names
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


class NotConvertible(UserError):
    """A model this converter cannot write for the engine (its architecture or tokenizer); it runs on torch."""


def check_convertible(folder: Path) -> dict:
    """The model's config when it can be converted; raises NotConvertible saying why not."""
    config = json.loads((folder / "config.json").read_text())
    kind = config.get("model_type", "")
    if kind not in ARCHITECTURES:
        raise NotConvertible(f"a {kind or 'unknown'} model (the OpenVINO engine reads {', '.join(ARCHITECTURES)})")
    tokenizer = folder / "tokenizer.json"
    if not tokenizer.is_file():
        raise NotConvertible("no tokenizer.json (a byte-level BPE tokenizer is needed)")
    try:
        model = json.loads(tokenizer.read_text()).get("model", {})
    except (json.JSONDecodeError, AttributeError) as exc:
        raise NotConvertible(f"its tokenizer.json is damaged ({exc})") from exc
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise NotConvertible("its tokenizer is not a byte-level BPE tokenizer (sentencepiece models stay on torch)")
    return config


def write_gguf(folder: Path, out: Path, weights: str = "int4", progress: Progress | None = None) -> None:
    """Write the transformers model in `folder` to `out` as a GGUF file of `weights` (int4 or int8)."""
    import gguf
    from safetensors import safe_open

    report = progress or (lambda f, m: None)
    config = check_convertible(folder)
    arch = ARCHITECTURES[config["model_type"]]
    writer = gguf.GGUFWriter(str(out), arch)
    _metadata(writer, config, folder.name, weights)
    _tokenizer(writer, folder, config)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config["num_hidden_layers"])
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise NotConvertible("no safetensors weights")
    for i, path in enumerate(files):
        with safe_open(str(path), "np") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open objects are not iterable
                _add_tensor(writer, names, key, f.get_tensor(key), config, arch, weights)
        report(0.1 + 0.5 * (i + 1) / len(files), f"quantized {path.name}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _metadata(writer, config: dict, name: str, weights: str) -> None:
    import gguf

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_name(name)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_freq_base(float(config.get("rope_theta") or (config.get("rope_parameters") or {}).get(
        "rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1 if weights == "int4" else gguf.LlamaFileType.MOSTLY_Q8_0)


def _tokenizer(writer, folder: Path, config: dict) -> None:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(folder)
    except (KeyError, ValueError, TypeError, OSError) as exc:  # what the tokenizer classes raise on malformed files
        raise NotConvertible(f"its tokenizer files are damaged or of an unknown kind ({type(exc).__name__}: {exc})") \
            from exc
    vocab, added = tok.get_vocab(), tok.added_tokens_decoder
    by_id = {i: t for t, i in vocab.items()}
    size = max(config["vocab_size"], len(by_id))
    tokens, types = [], []
    for i in range(size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(TOKEN_CONTROL if added[i].special else TOKEN_USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(TOKEN_NORMAL)
    merges = json.loads((folder / "tokenizer.json").read_text())["model"].get("merges", [])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    for token, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                       ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id)):
        token_id = getattr(tok, f"{token}_token_id", None)
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(False)
    if isinstance(tok.chat_template, str):
        writer.add_chat_template(tok.chat_template)


def _add_tensor(writer, names, key: str, data: np.ndarray, config: dict, arch: str, weights: str) -> None:
    import gguf

    if key == "lm_head.weight" and config.get("tie_word_embeddings"):
        return  # the reader uses the token embedding for the output
    name = names.get_name(key, try_suffixes=(".weight", ".bias"))
    if name is None:
        if "rotary_emb" in key:
            return
        raise NotConvertible(f"a tensor the converter does not know: {key}")
    data = data.astype(np.float32)
    if arch == "llama" and key.endswith(("q_proj.weight", "k_proj.weight")):
        heads = config["num_attention_heads"]
        if key.endswith("k_proj.weight"):
            heads = config.get("num_key_value_heads") or heads
        data = _permute(data, heads)
    if data.ndim != 2 or data.shape[-1] % 32:
        writer.add_tensor(name, data)  # norms and biases: float32
        return
    kind = "Q8_0" if name.startswith("token_embd") or name.startswith("output.") else WEIGHTS[weights]
    qtype = gguf.GGMLQuantizationType[kind]
    writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """Query/key rows in the interleaved rotary order GGUF llama files use (llama.cpp's convert script)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def openvino_folder(source: Path, models_dir: Path, name: str, weights: str = "int4",
                    progress: Progress | None = None) -> Path:
    """The OpenVINO engine's folder for the transformers model in `source`, converted once (about 20 s for 135M
    parameters) and then reused: GGUF written here, built by engines/gguf_openvino.py, the GGUF removed.

    Raises:
        NotConvertible: the architecture or tokenizer is not one the engine reads (checked before any work).
        GGUFError: the disk filled up or the engine could not build the model (the message names the model).
    """
    from engines import gguf_openvino

    check_convertible(source)
    stamp = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(source.iterdir())
                     if p.is_file())
    tag = hashlib.sha256(f"{source.resolve()}|{weights}|{stamp}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", name.strip("/")) or source.name  # a hub snapshot's folder is a hash
    folder = models_dir / "openvino" / f"{slug[-80:]}-{weights}-{tag}"
    if (folder / gguf_openvino.COMPLETE).is_file():
        return folder
    report = progress or (lambda f, m: logger.info("[%3.0f%%] %s", f * 100, m))
    folder.parent.mkdir(parents=True, exist_ok=True)
    gguf = folder.with_name(folder.name + ".gguf")
    report(0.0, f"converting {name} to {weights} for the OpenVINO engine (once)")
    try:
        write_gguf(source, gguf, weights, lambda f, m: report(f * 0.6, m))
        gguf_openvino.ensure_ir(gguf, folder, name, lambda f, m: report(0.6 + 0.4 * f, m),
                                fix="convert it again with --engine torch, or check the model files")
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise gguf_openvino.GGUFError(f"{name}: could not write the OpenVINO copy to {folder.parent} ({exc}); free "
                                      f"some disk space and load it again") from exc
    finally:
        gguf.unlink(missing_ok=True)
    _record_source(folder, source)
    _use_source_tokenizer(source, folder)
    return folder


COMPLETE_TMP = ".complete.tmp"


def _record_source(folder: Path, source: Path) -> None:
    """The folder's source is the model, not the GGUF file written on the way (and removed): the folder is kept
    while the model is there (engines/gguf_openvino.prune_stale)."""
    from engines import gguf_openvino

    marker = folder / gguf_openvino.COMPLETE
    facts = json.loads(marker.read_text())
    facts["source"] = str(source.resolve())
    written = marker.with_name(COMPLETE_TMP)
    written.write_text(json.dumps(facts))
    written.replace(marker)  # whole or not at all: a half-written marker would make the folder unreadable


def _use_source_tokenizer(source: Path, folder: Path) -> None:
    """The model's own tokenizer and config (exact), not the ones rebuilt from the GGUF file."""
    from transformers import AutoTokenizer

    from engines.gguf_openvino import ensure_tokenizer

    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    for file in ("config.json", "generation_config.json"):
        if (source / file).is_file():
            shutil.copyfile(source / file, folder / file)
    for stale in folder.glob("openvino_*tokenizer.*"):
        stale.unlink()
    ensure_tokenizer(folder)
