"""Fixtures for the text-to-image tests: a seeded micro Stable Diffusion pipeline and an app with only this tab."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_config

EMBEDDED_DIR = Path(__file__).resolve().parents[2] / "assets" / "t2i-model"


def build_tiny_sd(folder: Path, seed: int = 0) -> Path:
    """A StableDiffusionPipeline of seeded micro models (diffusers' get_dummy_components sizes), saved to `folder`.

    UNet block_out_channels=(4, 8), 2-layer CLIP text encoder of width 32, a 2-block VAE (latents 1/2 of the image),
    and a character-level CLIP BPE tokenizer (no merges), so nothing is downloaded.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if (folder / "model_index.json").exists():
        return folder
    chars = [chr(c) for c in range(ord("!"), ord("~") + 1)]
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[], model_max_length=32)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=2)
    vae = AutoencoderKL(block_out_channels=(4, 8), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=2)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=32,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                        pad_token_id=tok.pad_token_id))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sd(models_root) -> Path:
    return build_tiny_sd(models_root / "tiny-sd")


@pytest.fixture(scope="session")
def image_config(tmp_path_factory, models_root):
    return make_config(tmp_path_factory.mktemp("image-app"), models_root)


def make_engine(config):
    from engines.cache import ModelCache
    from engines.device import Placement
    from engines.image import ImageEngine
    from engines.resolve import HubProbe, ModelResolver

    resolver = ModelResolver(config.readable_dirs, config.models_dir, HubProbe(offline=True))
    return ImageEngine(ModelCache(max_models=2), resolver, lambda: Placement("cpu", "float32", "cpu"))


@pytest.fixture(scope="session")
def engine(image_config):
    return make_engine(image_config)


@pytest.fixture
def fresh_engine(image_config):
    """An engine with its own empty cache (a test may change its default model)."""
    return make_engine(image_config)


def start_image_app(engine, config):
    """Launch a Blocks holding only the Text-to-image tab, as app.py composes it; returns (demo, url, tab)."""
    import gradio as gr

    from engines.catalog import load_catalog
    from serving.sessions import StopRegistry
    from ui import image_tab

    with gr.Blocks() as demo, gr.Tab("Text to image"):
        tab = image_tab.build(image_tab.ImageDeps(engine, StopRegistry(), catalog=load_catalog(config.catalog_path)))
    demo.queue(default_concurrency_limit=8)
    demo.launch(server_name="127.0.0.1", server_port=config.port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{config.port}/", tab


@pytest.fixture(scope="session")
def image_app(engine, image_config):
    if not (EMBEDDED_DIR / "model_index.json").exists():
        pytest.skip("assets/t2i-model is missing: run scripts/train_t2i.py")
    demo, url, _ = start_image_app(engine, image_config)
    yield url
    demo.close()
