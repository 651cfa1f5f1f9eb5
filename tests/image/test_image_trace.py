"""The small CPU denoiser as traced graphs: the same images as eager, eager whenever the graph cannot apply."""

from __future__ import annotations

import numpy as np
import torch

from engines import image_trace
from engines.image_params import parse_image_params


def pipeline(folder):
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **kw):
    settings = dict(num_inference_steps=3, guidance_scale=3.0, height=32, width=32, output_type="np")
    with torch.inference_mode():
        return pipe("a red circle", generator=torch.Generator().manual_seed(5), **(settings | kw)).images


def test_traced_denoiser_draws_what_the_eager_one_draws(tiny_sd):
    pipe = pipeline(tiny_sd)
    eager = run(pipe)
    traced = image_trace.install(pipe, "cpu")
    assert traced is not None and pipe.unet.forward is traced
    assert np.abs(run(pipe) - eager).max() < 1e-4
    assert len(traced.graphs) == 1 and all(g is not None for g in traced.graphs.values())
    weights = sum(p.numel() * p.element_size() for p in pipe.unet.parameters())
    first = next(iter(traced.graphs.values()))
    held = image_trace.constant_bytes(first, besides=pipe.unet)
    assert 0 < held < image_trace.constant_bytes(first) <= 1.01 * weights  # some weights as they are, some copied
    run(pipe, guidance_scale=1.0)  # no guidance: one sample per image, a second graph
    assert len(traced.graphs) == 2
    both = image_trace.constant_bytes(*traced.graphs.values(), besides=pipe.unet)
    assert both == sum(traced.held.values()) == 2 * held  # each graph its own copies
    assert traced.describe() == f"denoiser traced for 2 input shapes (+{both / 2**20:.0f} MB)"


def test_settings_the_graph_cannot_honour_run_eagerly(tiny_sd):
    pipe = pipeline(tiny_sd)
    traced = image_trace.install(pipe, "cpu")
    assert traced.describe() == "denoiser not traced yet"
    traced.enabled = False
    run(pipe)
    assert not traced.graphs, "switched off: nothing traced"
    assert traced.describe() == "denoiser runs eagerly"
    traced.enabled = True
    sample, context = torch.randn(1, 4, 4, 4), torch.randn(1, 77, pipe.unet.config.cross_attention_dim)
    with torch.inference_mode():
        out = pipe.unet(sample, torch.tensor(10), encoder_hidden_states=context,
                        cross_attention_kwargs={"scale": 1.0}, return_dict=False)[0]
    assert out.shape == sample.shape and not traced.graphs, "extra inputs go to the model's own forward"


def test_only_small_cpu_denoisers_are_traced(tiny_sd, monkeypatch):
    assert image_trace.install(pipeline(tiny_sd), "cuda") is None
    monkeypatch.setattr(image_trace, "MAX_PARAMS", 10)
    assert image_trace.install(pipeline(tiny_sd), "cpu") is None


def test_the_engine_switches_the_graph_off_for_attention_slicing(engine, tiny_sd):
    values = dict(prompt="a red circle", steps=2, guidance_scale=3.0, seed=7, width=32, height=32, num_images=1)
    model = engine.load(str(tiny_sd))
    assert model.traced is not None
    sliced = engine.generate(str(tiny_sd), parse_image_params(**values, attention_slicing=True))
    assert model.traced.enabled is False
    plain = engine.generate(str(tiny_sd), parse_image_params(**values))
    assert model.traced.enabled is True
    assert np.abs(np.asarray(sliced.images[0], dtype=np.int16) - np.asarray(plain.images[0], dtype=np.int16)).max() <= 1
