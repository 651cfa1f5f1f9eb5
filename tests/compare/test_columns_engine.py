"""Columns on the real engine (the sharp tiny Llama): two columns on one model decode in the same batch steps."""

from __future__ import annotations

import threading

from compare.columns import ColumnRequest, stream_columns
from engines.cache import ModelCache
from engines.device import choose_placement
from engines.params import GenerationParams
from engines.resolve import HubProbe, ModelResolver
from engines.text import TextEngine


def test_two_columns_on_one_model_share_its_batch(tmp_path, models_root, sharp_llama):
    resolver = ModelResolver((models_root,), tmp_path / "converted", HubProbe(offline=True))
    engine = TextEngine(ModelCache(max_models=1), resolver, choose_placement("cpu", "float32"), max_batch=4)
    ref = str(sharp_llama)
    batcher = engine.load(ref).batcher
    assert batcher is not None
    greedy = GenerationParams(temperature=0.0, max_new_tokens=24, repetition_penalty=1.0, seed=1)
    hot = GenerationParams(temperature=1.0, max_new_tokens=24, repetition_penalty=1.0, seed=2)
    messages = ({"role": "user", "content": "once upon a time"},)
    before = batcher.stats().steps
    *_, states = stream_columns(engine, [ColumnRequest(ref, greedy, messages=messages),
                                         ColumnRequest(ref, hot, messages=messages)], threading.Event())
    steps = batcher.stats().steps - before
    generated = [s.stats["generated_tokens"] for s in states]
    assert all(not s.error for s in states) and min(generated) > 1
    assert steps < sum(generated) - 1, f"{steps} decode steps for {generated} tokens: the columns ran one by one"
    alone = "".join(u.delta for u in engine.chat(ref, list(messages), greedy))
    assert states[0].text == alone, "in a shared batch the greedy column gives the text it gives alone"
    assert [s.stats["seed"] for s in states] == [1, 2]
