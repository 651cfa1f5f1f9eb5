"""The real transformers code path on a tiny random Llama: streaming, stop, stop strings, trimming, errors."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from engines.cache import ModelCache
from engines.device import choose_placement
from engines.generation import GenerationError
from engines.params import GenerationParams
from engines.resolve import HubProbe, ModelNotFound, ModelResolver
from engines.text import InputTooLong, ModelLoadError, TextEngine

GREEDY = GenerationParams(temperature=0, max_new_tokens=12, repetition_penalty=1.0)


@pytest.fixture
def engine(tmp_path, models_root):
    resolver = ModelResolver((models_root,), tmp_path / "converted", HubProbe(offline=True))
    return TextEngine(ModelCache(max_models=2), resolver, choose_placement("cpu", "float32"), max_input_tokens=4096)


def run(stream):
    updates = list(stream)
    return "".join(u.delta for u in updates), updates


def test_chat_streams_token_by_token_and_reports_stats(engine, tiny_llama):
    text, updates = run(engine.chat(str(tiny_llama), [{"role": "user", "content": "hello"}], GREEDY))
    stats = updates[-1].stats
    assert stats is not None and stats.generated_tokens == len(updates) - 1
    assert stats.prompt_tokens > 3 and stats.finish_reason in {"eos", "length"}
    assert len([u for u in updates if u.delta]) > 1, "text must arrive in several pieces"


def test_greedy_is_deterministic_and_seeded_sampling_reproducible(engine, tiny_llama):
    ref, prompt = str(tiny_llama), "once upon a time"
    assert run(engine.complete(ref, prompt, GREEDY))[0] == run(engine.complete(ref, prompt, GREEDY))[0]
    sampled = GenerationParams(temperature=1.5, top_k=0, top_p=1.0, max_new_tokens=12, seed=1234)
    first, updates = run(engine.complete(ref, prompt, sampled))
    assert updates[-1].stats.seed == 1234
    assert run(engine.complete(ref, prompt, sampled))[0] == first


def test_stop_ends_the_generation_thread_within_a_token(engine, tiny_llama):
    stop = threading.Event()
    long = GenerationParams(temperature=0, max_new_tokens=1500, repetition_penalty=1.0)
    before = {t.ident for t in threading.enumerate()}
    stream = engine.complete(str(tiny_llama), "once", long, stop=stop)
    received = 0
    for update in stream:
        if update.stats:
            stats = update.stats
            break
        received += 1
        if received == 5:
            stop.set()
    assert stats.finish_reason == "stop"
    assert stats.generated_tokens <= 7, f"generation ran on for {stats.generated_tokens} tokens after stop"
    time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "generate" and t.ident not in before]


def test_closing_the_stream_early_stops_generation(engine, tiny_llama):
    stream = engine.complete(str(tiny_llama), "once", GenerationParams(temperature=0, max_new_tokens=400))
    next(stream)
    stream.close()  # what happens when a client disconnects
    time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "generate" and t.is_alive()]


def test_stop_strings_end_generation_and_are_not_shown(engine, tiny_llama):
    ref = str(tiny_llama)
    full, _ = run(engine.complete(ref, "the", GenerationParams(temperature=0, max_new_tokens=30)))
    assert len(full) > 4
    stop_at = full[2:4]
    text, updates = run(engine.complete(ref, "the", GenerationParams(temperature=0, max_new_tokens=30),
                                        stop_strings=(stop_at,)))
    assert updates[-1].stats.finish_reason == "stop_string"
    assert text == full[: full.find(stop_at)]


def test_token_probabilities(engine, tiny_llama):
    _, updates = run(engine.complete(str(tiny_llama), "the", GREEDY, with_probs=True))
    probs = [p for u in updates for _, p in u.tokens]
    assert probs and all(0 < p <= 1 for p in probs)


def test_long_conversation_is_trimmed_from_the_oldest_turns(engine, tiny_llama):
    engine.max_input_tokens = 112
    turns = []
    for i in range(12):
        turns += [{"role": "user", "content": f"question {i} about the capital of france"},
                  {"role": "assistant", "content": "paris is the capital of france"}]
    turns.append({"role": "user", "content": "last question"})
    messages = [{"role": "system", "content": "be brief"}, *turns]
    _, updates = run(engine.chat(str(tiny_llama), messages, GenerationParams(temperature=0, max_new_tokens=16)))
    stats = updates[-1].stats
    assert stats.trimmed_messages > 0 and stats.trimmed_messages % 2 == 0
    assert stats.prompt_tokens <= 112


def test_message_too_long_for_the_context(engine, tiny_llama):
    engine.max_input_tokens = 112
    huge = [{"role": "user", "content": "paris " * 400}]
    with pytest.raises(InputTooLong, match="shorten the message"):
        list(engine.chat(str(tiny_llama), huge, GREEDY))
    with pytest.raises(InputTooLong, match="leaves no room"):
        list(engine.chat(str(tiny_llama), [{"role": "user", "content": "hi"}],
                         GenerationParams(max_new_tokens=2048)))


def test_bad_models_fail_clearly_and_keep_the_loaded_one(engine, tiny_llama, models_root):
    from transformers import ViTConfig

    engine.load(str(tiny_llama))
    vit = models_root / "tiny-vit"
    ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(vit)
    with pytest.raises(ModelLoadError, match="vit model .* not a text-generation model"):
        engine.load(str(vit))
    no_weights = models_root / "no-weights"
    no_weights.mkdir(exist_ok=True)
    (no_weights / "config.json").write_text((tiny_llama / "config.json").read_text())
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_weights / name).write_text((tiny_llama / name).read_text())
    with pytest.raises(ModelLoadError, match="no file named model.safetensors"):
        engine.load(str(no_weights))
    broken = models_root / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text("{ this is not json")
    with pytest.raises((ModelLoadError, ValueError, OSError)):
        engine.load(str(broken))
    with pytest.raises(ModelNotFound):
        engine.load("nobody/missing-model")
    assert engine.cache.keys() == [str(tiny_llama)]
    assert run(engine.complete(str(tiny_llama), "the", GREEDY))[0] is not None


def test_failure_mid_generation_raises_with_partial_text(engine, tiny_llama):
    tm = engine.load(str(tiny_llama))
    original, calls = tm.model.forward, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) > 4:
            raise RuntimeError("device fell over")
        return original(*args, **kwargs)

    tm.model.forward = flaky
    try:
        with pytest.raises(GenerationError, match="failed after .* device fell over") as info:
            list(engine.complete(str(tiny_llama), "the", GenerationParams(temperature=0, max_new_tokens=50)))
        assert isinstance(info.value.partial, str)
    finally:
        tm.model.forward = original
    assert run(engine.complete(str(tiny_llama), "the", GREEDY))[1][-1].stats.generated_tokens > 0


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_cpu_decoding_paths_keep_the_text_and_count_the_packed_copy(tmp_path, models_root, tiny_llama, engine):
    resolver = ModelResolver((models_root,), tmp_path / "converted2", HubProbe(offline=True))
    fast = TextEngine(ModelCache(max_models=2), resolver, choose_placement("cpu", "float32"), threads=2,
                      split_linear=True, pack_linear=True)
    ref = str(tiny_llama)
    assert run(fast.complete(ref, "once upon a time", GREEDY))[0] == run(engine.complete(ref, "once upon a time",
                                                                                         GREEDY))[0]
    plain_bytes, fast_bytes = engine.cache.memory_bytes(), fast.cache.memory_bytes()
    model = fast.load(ref).model
    linear_bytes = sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert fast_bytes == plain_bytes + linear_bytes, "the Models tab counts the packed copy"
    (row,) = [r for r in fast.cache.rows() if r.key == ref]
    assert row.dtype == "float32 + packed copy", row.dtype


def test_a_chats_next_message_reuses_its_owners_conversation_only(tmp_path, models_root, tiny_llama, engine):
    resolver = ModelResolver((models_root,), tmp_path / "converted3", HubProbe(offline=True))
    cached = TextEngine(ModelCache(max_models=2), resolver, choose_placement("cpu", "float32"),
                        prefix_cache_bytes=64 << 20)
    ref = str(tiny_llama)
    first = [{"role": "user", "content": "hello there, please tell me a long story about a dragon"}]
    reply = run(cached.chat(ref, first, GREEDY, owner="ann"))[0]
    follow_up = [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "and then?"}]
    batcher = cached.load(ref).batcher
    assert batcher is not None and batcher.stats().reused_tokens == 0
    assert run(cached.chat(ref, follow_up, GREEDY, owner="ann"))[0] == run(engine.chat(ref, follow_up, GREEDY))[0]
    reused = batcher.stats().reused_tokens
    assert reused >= 16, "the first exchange's tokens were not prefilled again"
    assert run(cached.chat(ref, follow_up, GREEDY, owner="bob"))[0] == run(engine.chat(ref, follow_up, GREEDY))[0]
    assert batcher.stats().reused_tokens == reused, "another person's conversation is never reused"
