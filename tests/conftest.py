"""Shared fixtures: offline, one torch thread, tiny random models built on the spot, app launchers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
from helpers import build_tiny_llama, make_config


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)
    config.addinivalue_line("markers", "embedded: uses the embedded SmolLM2 model (real weights)")
    config.addinivalue_line("markers", "browser: drives headless Chromium")


@pytest.fixture(scope="session")
def models_root(tmp_path_factory) -> Path:
    """A directory the test configs allow local model folders in."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_llama(models_root) -> Path:
    """A seeded 2-layer Llama with a small BPE tokenizer and a chat template; 2048-token context."""
    return build_tiny_llama(models_root / "tiny-llama")


@pytest.fixture(scope="session")
def sharp_llama(models_root) -> Path:
    """The tiny Llama with sharp logits: for tests comparing greedy text across batches, servers or processes."""
    return build_tiny_llama(models_root / "sharp-llama", init_range=0.3)


@pytest.fixture
def config(tmp_path, models_root):
    return make_config(tmp_path, models_root)
