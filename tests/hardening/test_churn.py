"""Model churn in small: five load/use/unload cycles of the tiny Llama through the app's TextEngine free the model
every time and leave resident memory where the first cycle left it (scripts/churn_models.py runs 20 cycles of the
real chat and image models)."""

from __future__ import annotations

from engines.params import GenerationParams
from scripts.churn_models import Step, churn, summary


def test_load_use_unload_cycles_free_the_model_and_keep_memory_flat(tiny_llama, models_root, tmp_path):
    from engines.cache import ModelCache
    from engines.device import choose_placement
    from engines.resolve import HubProbe, ModelResolver
    from engines.text import TextEngine

    cache = ModelCache(max_models=2)
    resolver = ModelResolver((models_root,), tmp_path / "models", HubProbe(offline=True))
    engine = TextEngine(cache, resolver, choose_placement("cpu", "float32"), max_batch=2)
    model, question = str(tiny_llama), [{"role": "user", "content": "hello there"}]

    def chat():
        reply = "".join(u.delta for u in engine.chat(model, question, GenerationParams(max_new_tokens=6)))
        assert reply
        return engine.load(model).model

    rows = churn(cache, [Step("tiny llama", chat)], cycles=5)
    result = summary(rows)
    assert result["every_model_freed"], rows
    assert cache.keys() == [] and result["within_10_percent"], result
