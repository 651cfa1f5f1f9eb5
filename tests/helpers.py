"""Builders for tests: tiny models, configs, services and a launched app."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from config import AppConfig

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "the capital of france is paris and the capital of italy is rome",
    "once upon a time there was a small dragon who loved to read books",
    "hello world, this is a tiny tokenizer for tests; numbers 0 1 2 3 4 5 6 7 8 9",
] * 20


def build_tiny_llama(folder: Path, context: int = 2048, seed: int = 0, init_range: float = 0.02) -> Path:
    """Save a seeded random LlamaForCausalLM (about 30k parameters) and a trained byte-level BPE tokenizer.

    A larger `init_range` makes the logits sharp: greedy picks then have clear winners, so they cannot flip with
    the last bits of a matrix product (batch composition, memory alignment) as near-ties of the default can.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if (folder / "config.json").exists():
        return folder
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|im_end|>")
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=context,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                      initializer_range=init_range)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def sharp_llama(seed: int = 0, context: int = 2048):
    """A tiny random Llama in memory whose weights are large enough that attention is sharp: a wrong position, mask
    or cache row changes its greedy tokens."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=context, initializer_range=0.3)
    return LlamaForCausalLM(cfg).eval()


def cpu_text_engine(roots: tuple[Path, ...], models_dir: Path, max_models: int = 1, **options):
    """The real TextEngine on the CPU in float32, resolving only local folders under `roots` (offline);
    `options` go to TextEngine (engine, max_batch, threads, ov_weights, ...)."""
    from engines.cache import ModelCache
    from engines.device import choose_placement
    from engines.resolve import HubProbe, ModelResolver
    from engines.text import TextEngine

    resolver = ModelResolver(tuple(roots), models_dir, HubProbe(offline=True))
    return TextEngine(ModelCache(max_models=max_models), resolver, choose_placement("cpu", "float32"), **options)


def make_config(tmp_path: Path, models_root: Path, **overrides) -> AppConfig:
    values = dict(data_dir=tmp_path / "data", allowed_dirs=(models_root,), offline=True, preload=False,
                  port=free_port(), max_new_tokens=512, rate_limit_per_min=1000,
                  engine=os.getenv("PLAYGROUND_ENGINE", "auto"))  # PLAYGROUND_ENGINE=torch: the suite on torch
    values.update(overrides)
    return AppConfig(**values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def fake_services(config: AppConfig, engine, embedder=None, image=None):
    """Services with a fake text engine (and a hashing embedder) in place of the real ones (same wiring as the app)."""
    from index.fake_embedder import HashEmbedder

    from databrowser.browser import DatasetBrowser
    from engines.cache import ModelCache
    from engines.catalog import load_catalog
    from engines.device import Placement
    from services import Services, build_compare
    from serving.limits import RateLimiter
    from serving.sessions import StopRegistry
    from store import CollectionIndex, HistoryStore

    embedder = embedder or HashEmbedder()
    limiter = RateLimiter(config.rate_limit_per_min)
    history = HistoryStore.from_config(config, embedder=embedder)
    return Services(config=config, catalog=load_catalog(config.catalog_path), cache=ModelCache(),
                    placement=lambda: Placement("cpu", "float32", "cpu"), resolver=None, text=engine,
                    image=image or _image_engine(config),
                    registry=StopRegistry(limiter, config.request_timeout_s),
                    datasets=DatasetBrowser.from_config(config), history=history,
                    index=CollectionIndex.from_config(config, embedder=embedder), embedder=embedder, limiter=limiter,
                    compare=build_compare(config, engine, history))


def start_app(services):
    """Launch the real app around `services` without blocking; returns (demo, url)."""
    import app

    demo = app.build_app(services)
    app.launch(services, demo, block=False)
    return demo, f"http://127.0.0.1:{services.config.port}/"


def message_text(message: dict) -> str:
    """Text of a chatbot message as gradio_client returns it (content is a list of parts in gradio 6)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _image_engine(config: AppConfig):
    """The real image engine (it loads nothing until asked), for apps whose tests don't generate images."""
    from engines.cache import ModelCache
    from engines.device import Placement
    from engines.image import ImageEngine
    from engines.resolve import HubProbe, ModelResolver

    resolver = ModelResolver(config.readable_dirs, config.models_dir, HubProbe(offline=True))
    return ImageEngine(ModelCache(), resolver, lambda: Placement("cpu", "float32", "cpu"))
