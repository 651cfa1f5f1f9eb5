"""Transformers models on the OpenVINO engine: a hub model is converted once (engines/hf_gguf.py) and runs there
with `--engine auto`; local folders stay on torch; what the converter cannot write is refused by name (openvino)
or left on torch (auto)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading

import pytest

from engines.params import GenerationParams

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino_genai") is None,
                                reason="openvino-genai is not installed")
GREEDY = GenerationParams(temperature=0, repetition_penalty=1.0, max_new_tokens=12)
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A local hub cache (as huggingface_hub lays it out) that `add` puts model folders in."""
    import huggingface_hub.constants

    root = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))

    def add(repo_id: str, folder) -> None:
        repo = root / f"models--{repo_id.replace('/', '--')}"
        shutil.copytree(folder, repo / "snapshots" / "0123abcd")
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0123abcd")

    return add


def text_engine(tmp_path, models_root, engine: str, ov_weights: str = "int8"):
    from helpers import cpu_text_engine

    return cpu_text_engine((models_root,), tmp_path / "models", max_models=2, engine=engine, max_batch=4, threads=1,
                           ov_weights=ov_weights)


def greedy(text, ref: str) -> list[str]:
    return [piece for u in text.chat(ref, HELLO, GREEDY) for piece, _ in u.tokens]


def test_a_hub_model_is_converted_once_and_answers_as_on_torch(tmp_path, models_root, sharp_llama, hub_cache):
    hub_cache("test-org/sharp-llama", sharp_llama)
    text = text_engine(tmp_path, models_root, "auto")
    steps: list[str] = []
    text.load("test-org/sharp-llama", lambda fraction, message: steps.append(message))
    row = next(r for r in text.cache.rows() if r.key == "test-org/sharp-llama")
    assert (row.engine, row.source) == ("openvino", "hub cache")
    assert any("converting test-org/sharp-llama to int8" in s for s in steps)
    assert [p.name[:-13] for p in (tmp_path / "models" / "openvino").iterdir() if p.is_dir()] == [
        "test-org--sharp-llama-int8"]
    folder = next(p for p in (tmp_path / "models" / "openvino").iterdir() if p.is_dir())
    assert json.loads((folder / ".complete").read_text())["source"].endswith("snapshots/0123abcd")  # kept while there
    on_openvino = greedy(text, "test-org/sharp-llama")
    torch_text = text_engine(tmp_path, models_root, "torch")
    assert on_openvino == greedy(torch_text, str(sharp_llama))  # int8 keeps the sharp model's greedy tokens
    text.cache.clear()
    steps.clear()
    text.load("test-org/sharp-llama", lambda fraction, message: steps.append(message))
    assert not any("converting" in s for s in steps), "converted once, then reused"
    for t in (text, torch_text):
        t.cache.close()


def test_int4_is_the_default_and_a_local_folder_stays_on_torch(tmp_path, models_root, sharp_llama, hub_cache):
    hub_cache("test-org/sharp-llama", sharp_llama)
    text = text_engine(tmp_path, models_root, "auto", ov_weights="int4")
    text.load("test-org/sharp-llama")
    text.load(str(sharp_llama))
    engines = {r.key: (r.engine, r.dtype) for r in text.cache.rows()}
    assert engines["test-org/sharp-llama"][0] == "openvino" and "Q4_1" in engines["test-org/sharp-llama"][1]
    assert engines[str(sharp_llama)][0] == "torch"
    stop = threading.Event()
    assert len(greedy(text, "test-org/sharp-llama")) == GREEDY.max_new_tokens or not stop.is_set()
    text.cache.close()


def test_what_the_converter_cannot_write_is_refused_by_name_or_left_on_torch(tmp_path, models_root, sharp_llama,
                                                                            hub_cache):
    from transformers import GPT2Config, GPT2LMHeadModel

    from engines.text import ModelLoadError

    folder = models_root / "tiny-gpt2"
    if not (folder / "config.json").exists():
        GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=512, n_positions=64)).save_pretrained(
            folder)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(sharp_llama / name, folder / name)
    with pytest.raises(ModelLoadError, match=r"tiny-gpt2 cannot run on the openvino engine: a gpt2 model.*"
                                             r"--engine auto"):
        text_engine(tmp_path, models_root, "openvino").load(str(folder))
    hub_cache("test-org/tiny-gpt2", folder)
    text = text_engine(tmp_path, models_root, "auto")
    text.load("test-org/tiny-gpt2")
    assert [r.engine for r in text.cache.rows()] == ["torch"]
    assert not list((tmp_path / "models").glob("openvino/*")), "nothing converted"
    text.cache.close()


def test_a_damaged_tokenizer_is_a_clear_refusal(tmp_path, models_root, sharp_llama):
    from engines.text import ModelLoadError

    folder = models_root / "damaged-tokenizer"
    shutil.copytree(sharp_llama, folder, dirs_exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}}))
    for engine in ("torch", "openvino"):
        with pytest.raises(ModelLoadError, match=r"damaged-tokenizer.*tokenizer"):
            text_engine(tmp_path, models_root, engine).load(str(folder))


def test_a_prepared_folder_whose_source_is_gone_or_changed_is_removed_at_the_next_build(tmp_path):
    from engines.gguf_openvino import COMPLETE, folder_for, prune_stale

    root = tmp_path / "openvino"
    there, gone, changed = tmp_path / "there.gguf", tmp_path / "gone.gguf", tmp_path / "changed.gguf"
    there.write_bytes(b"x")
    changed.write_bytes(b"y")
    old_copy = folder_for(changed, tmp_path).name
    changed.write_bytes(b"a new version of the file")
    for name, source in (("kept", there), ("stale", gone), ("new", gone), (folder_for(there, tmp_path).name, there),
                         (old_copy, changed)):
        (root / name).mkdir(parents=True)
        (root / name / COMPLETE).write_text(json.dumps({"source": str(source)}))
        (root / f"{name}.lock").touch()
    (root / "half-written").mkdir()  # no marker: being built, or not ours
    removed = prune_stale(root, keep=root / "new")
    assert sorted(removed) == sorted([root / "stale", root / old_copy])
    current = folder_for(there, tmp_path).name
    assert sorted(p.name for p in root.iterdir()) == sorted(["half-written", "kept", "kept.lock", "new", "new.lock",
                                                            current, current + ".lock"])
