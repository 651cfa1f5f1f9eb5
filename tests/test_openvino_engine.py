"""The OpenVINO engine on the real embedded SmolLM2 GGUF: answers, agreement with float32, Stop, seeds,
probabilities, no prompt reuse across owners, and clear refusals of bad GGUF files that keep the loaded model."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import pytest

from config import default_data_dir
from engines.params import GenerationParams

pytestmark = [pytest.mark.embedded, pytest.mark.skipif(importlib.util.find_spec("openvino_genai") is None,
                                                      reason="openvino-genai is not installed")]
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = GenerationParams(temperature=0, repetition_penalty=1.0, max_new_tokens=24)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, models_root):
    from helpers import cpu_text_engine

    data = default_data_dir()  # the OpenVINO copy is built there once (as `make prepare` does) and reused
    text = cpu_text_engine((models_root, data), data / "models", max_models=3, engine="openvino", max_batch=4,
                           threads=2)
    text.load(MODEL)
    yield text
    text.cache.close()


def run(engine, params: GenerationParams, messages=FRANCE, owner: str = "", stop=None, with_probs=False):
    updates = list(engine.chat(MODEL, messages, params, stop=stop, with_probs=with_probs, owner=owner))
    tokens = [t for u in updates for t in u.tokens]
    return "".join(u.delta for u in updates), tokens, updates[-1].stats


def test_the_embedded_model_runs_from_its_gguf_on_openvino(engine):
    row = next(r for r in engine.cache.rows() if r.key == MODEL)
    assert (row.engine, row.source, row.parameters) == ("openvino", "embedded GGUF", 134_515_008)
    assert row.dtype.startswith("GGUF Q4_1")
    assert 90 < row.memory_mb < 1000  # measured resident memory, not a guess from the weights
    import psutil

    process = engine.load(MODEL).batcher.process.proc
    assert row.memory_mb * 2**20 >= psutil.Process(process.pid).memory_info().rss * 0.9  # the engine process, now


def test_greedy_answer_and_probabilities_agree_with_float32(engine):
    import torch
    from transformers import AutoModelForCausalLM

    from engines.embedded import ensure_converted

    text, tokens, stats = run(engine, GREEDY, with_probs=True)
    assert "Paris" in text and stats.finish_reason == "eos"
    tm = engine.load(MODEL)
    ids = engine._chat_ids(tm, FRANCE, GREEDY.max_new_tokens)[0]
    reference = AutoModelForCausalLM.from_pretrained(ensure_converted(MODEL, default_data_dir() / "models"),
                                                     dtype=torch.float32)
    out = reference.generate(torch.tensor([ids]), max_new_tokens=len(tokens), do_sample=False,
                             output_scores=True, return_dict_in_generate=True)
    greedy = out.sequences[0, len(ids):].tolist()
    probs = [torch.softmax(s[0], -1) for s in out.scores]
    assert [tm.tokenizer.decode([t], skip_special_tokens=True) for t in greedy] == [piece for piece, _ in tokens]
    for (_, p), dist, token in zip(tokens, probs, greedy, strict=True):
        assert 0 < p <= 1
        assert int(dist.argmax()) == token  # the engine's greedy token is float32's most likely one
        assert abs(p - float(dist[token])) < 0.05, (p, float(dist[token]))


def test_stop_ends_the_reply_within_one_token(engine):
    stop = threading.Event()
    seen_after = 0
    params = GenerationParams(temperature=0, max_new_tokens=400)
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    n = 0
    for update in engine.chat(MODEL, story, params, stop=stop):
        n += len(update.tokens)
        if stop.is_set():
            seen_after += len(update.tokens)
        if n == 5:
            stop.set()
        if update.stats:
            assert update.stats.finish_reason == "stop"
    assert seen_after <= 1
    batcher = engine.load(MODEL).batcher
    assert batcher.stats().running == 0


def test_a_seed_gives_the_same_reply_alone_and_in_a_batch(engine):
    sample = GenerationParams(temperature=0.9, top_p=0.95, top_k=40, max_new_tokens=24, seed=7)
    alone, _, _ = run(engine, sample)
    assert run(engine, sample)[0] == alone
    results: dict[str, str] = {}

    def worker(name: str, params: GenerationParams, messages) -> None:
        results[name] = run(engine, params, messages)[0]

    others = [("a", GenerationParams(temperature=1.0, max_new_tokens=30, seed=1),
               [{"role": "user", "content": "Name three fruits."}]),
              ("b", GenerationParams(temperature=0.7, max_new_tokens=20, seed=2),
               [{"role": "user", "content": "Say hello."}]),
              ("mine", sample, FRANCE)]
    threads = [threading.Thread(target=worker, args=job) for job in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results["mine"] == alone
    assert run(engine, GenerationParams(temperature=0.9, max_new_tokens=24, seed=8))[0] != alone


def test_one_owners_prompt_is_never_reused_for_another(engine):
    # the engine's prefix cache is keyed by tokens alone, so it is off: a long prompt someone else sent before is
    # prefilled as whole as one nobody sent (with the cache on, it took a tenth of the time)
    def prompt(words: str) -> list[dict]:
        return [{"role": "user", "content": "Summarize: " + words * 60}]

    one = GenerationParams(temperature=0, max_new_tokens=1)
    run(engine, one, prompt("the quick brown fox jumps over the lazy dog. "), owner="browser:ann")
    seen = run(engine, one, prompt("the quick brown fox jumps over the lazy dog. "), owner="browser:bob")[2]
    fresh = run(engine, one, prompt("a slow green frog leaps under the busy cat. "), owner="browser:eve")[2]
    assert abs(seen.prompt_tokens - fresh.prompt_tokens) < 20
    assert seen.ttft_s > 0.4 * fresh.ttft_s, (seen.ttft_s, fresh.ttft_s)
    assert "prefix reuse off" in engine.load(MODEL).activity()


def test_a_truncated_gguf_is_refused_by_name_and_the_model_stays(engine, models_root):
    from engines.embedded import EMBEDDED, package_file
    from errors import UserError

    source = package_file(EMBEDDED[MODEL])
    broken = models_root / "broken.gguf"
    with source.open("rb") as f:
        broken.write_bytes(f.read(5_000_000))
    with pytest.raises(UserError, match=r"broken\.gguf: the GGUF file is (damaged or )?truncated.*download the file"):
        engine.load(str(broken))
    garbage = models_root / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all" * 100)
    with pytest.raises(UserError, match=r"garbage\.gguf: the GGUF file is damaged"):
        engine.load(str(garbage))
    assert MODEL in engine.cache and "Paris" in run(engine, GREEDY)[0]
    left = [p.name for p in Path(engine.resolver.models_dir, "openvino").glob("*") if p.name.startswith(("broken",
                                                                                                       "garbage"))]
    assert not left, "a refused file leaves nothing in the data directory"


def test_an_unsupported_architecture_is_refused_and_the_model_stays(engine, models_root):
    import gguf

    from errors import UserError

    path = models_root / "tiny-mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError, match=r"tiny-mamba\.gguf.*cannot run a 'mamba' GGUF.*--engine torch"):
        engine.load(str(path))
    assert MODEL in engine.cache
    assert not list(Path(engine.resolver.models_dir, "openvino").glob("tiny-mamba*"))


def test_the_engine_runs_in_its_own_process_which_unloading_ends(engine):
    import os

    process = engine.load(MODEL).batcher.process.proc
    assert process.pid != os.getpid() and process.poll() is None
    assert engine.cache.unload(MODEL)
    assert process.wait(10) is not None  # its memory went with it
    assert "Paris" in run(engine, GREEDY)[0]  # loaded again on demand


def test_the_engine_process_keeps_little_of_the_weights_file_resident(engine):
    assert "Paris" in run(engine, GREEDY)[0]
    pid = engine.load(MODEL).batcher.process.proc.pid
    resident_kb, mapping = 0, ""
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):
                mapping = fields[5] if len(fields) > 5 else ""
            elif fields[0] == "Rss:" and mapping.endswith("/openvino_model.bin"):
                resident_kb += int(fields[1])
    assert resident_kb < 30 * 1024, f"{resident_kb >> 10} MB of the 93 MB file resident (89 before it was dropped)"


def test_an_unload_leaves_a_spare_process_that_the_next_load_takes(engine):
    from engines import openvino_process

    assert engine.cache.unload(MODEL)
    spare = openvino_process._spare
    assert spare is not None and spare.proc.poll() is None
    assert engine.load(MODEL).batcher.process is spare and openvino_process._spare is None
    assert "Paris" in run(engine, GREEDY)[0]
    unused = openvino_process.EngineProcess("never loaded")  # a spare ended at exit without a model
    unused.close()
    assert unused.proc.poll() is not None


def test_a_dead_engine_process_fails_its_requests_clearly_and_a_reload_works(engine):
    from engines.generation import GenerationError
    from errors import Unavailable

    batcher = engine.load(MODEL).batcher
    stop = threading.Event()
    updates = engine.chat(MODEL, [{"role": "user", "content": "Write a long story."}],
                          GenerationParams(temperature=0, max_new_tokens=400), stop=stop)
    next(updates)
    batcher.process.proc.kill()
    with pytest.raises((GenerationError, Unavailable), match="engine process (has )?ended"):
        list(updates)
    with pytest.raises(Unavailable, match="engine process has ended.*load it again"):
        batcher.submit([1, 2, 3], GREEDY, 0, threading.Event())
    assert "Paris" in run(engine, GREEDY)[0]  # the next request loads the model afresh
    assert engine.load(MODEL).batcher is not batcher
