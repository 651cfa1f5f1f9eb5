"""The real diffusers code path on a seeded micro pipeline: seeds, schedulers, interrupt, failures, wrong models."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from engines.image_params import parse_image_params
from engines.text import ModelLoadError


def params(**kw):
    values = dict(prompt="a red circle", steps=2, guidance_scale=3.0, seed=7, width=32, height=32, num_images=1)
    values.update(kw)
    return parse_image_params(**values)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_generates_with_the_seed_shown(engine, tiny_sd):
    result = engine.generate(str(tiny_sd), params(num_images=2))
    assert len(result.images) == 2 and result.images[0].size == (32, 32)
    assert result.seed == 7 and result.steps_done == 2 and not result.interrupted
    assert result.metadata(1)["seed"] == 8 and result.metadata(1)["num_images"] == 1
    # image 1 alone, from the seed its metadata carries, is the same picture
    again = engine.generate(str(tiny_sd), params(seed=8))
    assert np.abs(pixels(again.images[0]) - pixels(result.images[1])).max() <= 1
    assert np.abs(pixels(result.images[0]) - pixels(result.images[1])).max() > 0


def test_random_seed_is_drawn_and_reported(engine, tiny_sd):
    a, b = engine.generate(str(tiny_sd), params(seed=-1)), engine.generate(str(tiny_sd), params(seed=-1))
    assert a.seed != b.seed and 0 <= a.seed < 2**32


def test_scheduler_is_swapped_from_the_pipeline_config(engine, tiny_sd):
    base = engine.generate(str(tiny_sd), params(steps=3))
    euler = engine.generate(str(tiny_sd), params(steps=3, scheduler="Euler a"))
    assert type(engine.load(str(tiny_sd)).pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert np.abs(pixels(base.images[0]) - pixels(euler.images[0])).max() > 0
    assert "DPM++ 2M Karras" in engine.scheduler_choices(str(tiny_sd))


def test_progress_reports_every_step(engine, tiny_sd):
    seen = []
    engine.generate(str(tiny_sd), params(steps=4), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_interrupt_stops_at_the_next_step_and_the_model_stays_usable(engine, tiny_sd):
    stop = threading.Event()

    def progress(done, total):
        if done == 2:
            stop.set()

    result = engine.generate(str(tiny_sd), params(steps=50), stop=stop, progress=progress)
    assert result.interrupted and result.steps_done == 2 and len(result.images) == 1
    after = engine.generate(str(tiny_sd), params(steps=3))
    assert after.steps_done == 3 and not after.interrupted


def test_a_failure_mid_run_leaves_the_model_usable(engine, tiny_sd):
    def boom(done, total):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        engine.generate(str(tiny_sd), params(steps=5), progress=boom)
    model = engine.load(str(tiny_sd))
    assert not model.lock.locked()
    assert engine.generate(str(tiny_sd), params()).steps_done == 2


def test_too_large_requests_are_refused_before_any_step(engine, tiny_sd):
    seen = []
    with pytest.raises(ValueError, match="lower the size or the number of images"):
        engine.generate(str(tiny_sd), params(width=2048, height=2048, num_images=8), progress=lambda *a: seen.append(a))
    assert seen == []


def test_a_language_model_is_named_for_what_it_is(engine, tiny_llama):
    with pytest.raises(ModelLoadError, match=r"is a transformers llama model \(LlamaForCausalLM\), not a diffusers"):
        engine.load(str(tiny_llama))


def test_an_image_to_image_pipeline_is_refused(engine, tiny_sd, models_root):
    folder = models_root / "img2img"
    folder.mkdir(exist_ok=True)
    index = json.loads((tiny_sd / "model_index.json").read_text()) | {"_class_name": "StableDiffusionUpscalePipeline"}
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="is a StableDiffusionUpscalePipeline, not a text-to-image pipeline"):
        engine.load(str(folder))


def test_the_unreachable_default_falls_back_to_the_embedded_model(fresh_engine, tiny_sd):
    engine = fresh_engine
    engine.default_ref = "some-owner/not-downloadable"
    result = engine.generate("some-owner/not-downloadable", params(width=64, height=64))
    assert result.model == "hf-playground/tiny-t2i-64" and "not available" in result.note
    with pytest.raises(Exception, match="cannot find model"):
        engine.generate("other-owner/not-the-default", params())



def test_attention_processors_keep_their_signature_once_remembered(tiny_sd):
    import inspect

    from diffusers import AutoPipelineForText2Image

    from engines.image import remember_processor_signatures

    pipe = AutoPipelineForText2Image.from_pretrained(str(tiny_sd))
    classes = {type(p) for p in pipe.unet.attn_processors.values()}
    before = {cls: inspect.signature(cls.__call__) for cls in classes}
    assert remember_processor_signatures(pipe) == len(classes) >= 1
    for cls in classes:
        assert "__signature__" in vars(cls.__call__) and inspect.signature(cls.__call__) == before[cls]
        bound = inspect.signature(next(p for p in pipe.unet.attn_processors.values() if type(p) is cls).__call__)
        assert "self" not in bound.parameters and "hidden_states" in bound.parameters
