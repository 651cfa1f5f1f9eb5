"""The model cache: LRU, memory budget, one load per key, real release, idle unload."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from engines.cache import Loaded, ModelCache


class Model:
    """Stands in for a model object; weakref-able so tests can see it freed."""


def loader(memory_mb: int = 10, counter: list | None = None, delay: float = 0.0):
    def load() -> Loaded:
        if counter is not None:
            counter.append(1)
        time.sleep(delay)
        return Loaded(value=Model(), task="t", device="cpu", dtype="float32", parameters=1000,
                      memory_bytes=memory_mb * 2**20)
    return load


def test_lru_evicts_least_recently_used():
    cache = ModelCache(max_models=2)
    cache.get("a", loader())
    cache.get("b", loader())
    cache.get("a", loader())  # a is now most recent
    cache.get("c", loader())
    assert cache.keys() == ["a", "c"]


def test_memory_budget_evicts_until_it_fits():
    cache = ModelCache(max_models=5, max_memory_bytes=25 * 2**20)
    cache.get("a", loader(10))
    cache.get("b", loader(10))
    cache.get("c", loader(10))
    assert cache.keys() == ["b", "c"]
    assert cache.memory_bytes() == 20 * 2**20


def test_racing_first_requests_load_once():
    cache, counter = ModelCache(), []
    barrier = threading.Barrier(6)
    results = []

    def worker():
        barrier.wait()
        results.append(cache.get("m", loader(counter=counter, delay=0.2)))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(counter) == 1
    assert len({id(r) for r in results}) == 1


def test_failed_load_keeps_loaded_models():
    cache = ModelCache(max_models=1)
    first = cache.get("good", loader())

    def broken():
        raise OSError("weights missing")

    with pytest.raises(OSError):
        cache.get("bad", broken)
    assert cache.keys() == ["good"]
    assert cache.get("good", loader()) is first
    assert cache.loading() == []


def test_unload_really_frees_the_model():
    cache = ModelCache()
    ref = weakref.ref(cache.get("m", loader()))
    assert ref() is not None
    assert cache.unload("m") is True
    gc.collect()
    assert ref() is None, "the cache must not keep the model alive after unload"
    assert cache.unload("m") is False


def test_eviction_frees_memory_too():
    cache = ModelCache(max_models=1)
    ref = weakref.ref(cache.get("a", loader()))
    cache.get("b", loader())
    gc.collect()
    assert ref() is None


def test_idle_unload_spares_models_in_use():
    cache = ModelCache(idle_unload_s=0.05)
    with cache.use("busy", loader()):
        cache.get("idle", loader())
        time.sleep(0.3)
        assert "busy" in cache and "idle" not in cache
    time.sleep(0.4)
    assert cache.keys() == []
    cache.close()


def test_rows_report_facts():
    cache = ModelCache()
    cache.get("m", loader(64))
    (row,) = cache.rows()
    assert (row.key, row.device, row.dtype, row.parameters, row.memory_mb) == ("m", "cpu", "float32", 1000, 64.0)
    assert row.load_seconds >= 0 and row.in_use == 0
