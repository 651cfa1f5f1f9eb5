"""The one cache that owns every loaded model.

LRU over a limit on the number of loaded models and an optional memory budget; one load per key when requests
race; real memory release on unload; optional unload after an idle period. Nothing else in the app keeps a model
alive: callers borrow one with `cache.use(key, loader)` for the length of a request.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class Loaded:
    """What a loader returns: the model object(s) plus facts shown in the Models tab."""

    value: Any
    task: str
    device: str
    dtype: str
    parameters: int
    memory_bytes: int
    source: str = ""
    engine: str = "torch"  # what runs it: torch (transformers, diffusers) or openvino (engines/openvino_text.py)
    resident: Callable[[], int | None] | None = None  # its memory now, where that is measurable (its own process)

    def memory_now(self) -> int:
        """Resident memory now when the loader can measure it, else what it measured at load."""
        now = self.resident() if self.resident is not None else None
        return now if now is not None else self.memory_bytes


@dataclass
class Entry:
    loaded: Loaded
    load_seconds: float
    last_used: float = field(default_factory=time.monotonic)
    in_use: int = 0


@dataclass(frozen=True)
class CacheRow:
    """One loaded model, as the Models tab lists it."""

    key: str
    task: str
    device: str
    dtype: str
    parameters: int
    memory_mb: float
    load_seconds: float
    idle_seconds: float
    in_use: int
    source: str
    activity: str = ""  # e.g. how many requests share a text model's batch
    engine: str = "torch"


def release_memory() -> None:
    """Give freed tensors back: collect cycles, then empty the accelerator caches."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()


class ModelCache:
    """LRU cache of loaded models with per-key load locks.

    Args:
        max_models: most models kept loaded at once.
        max_memory_bytes: evict least recently used models while the total exceeds this (None: no budget).
        idle_unload_s: unload a model nobody used for this long (None: never); checked by a daemon thread.
    """

    def __init__(self, max_models: int = 2, max_memory_bytes: int | None = None, idle_unload_s: float | None = None):
        if max_models < 1:
            raise ValueError(f"max_models must be at least 1, got {max_models}")
        self.max_models = max_models
        self.max_memory_bytes = max_memory_bytes
        self.idle_unload_s = idle_unload_s
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.RLock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._loading: set[str] = set()
        self._closed = threading.Event()
        if idle_unload_s:
            threading.Thread(target=self._idle_loop, name="model-idle-unload", daemon=True).start()

    # -- borrowing -------------------------------------------------------------------------------------------
    @contextmanager
    def use(self, key: str, loader: Callable[[], Loaded]) -> Iterator[Any]:
        """Borrow the model for `key`, loading it with `loader` on first use; it stays loaded while borrowed."""
        entry = self._get_or_load(key, loader)
        with self._lock:
            entry.in_use += 1
        try:
            yield entry.loaded.value
        finally:
            with self._lock:
                entry.in_use -= 1
                entry.last_used = time.monotonic()

    def get(self, key: str, loader: Callable[[], Loaded]) -> Any:
        """Load (or touch) `key` and return its value without holding it."""
        return self._get_or_load(key, loader).loaded.value

    def _get_or_load(self, key: str, loader: Callable[[], Loaded]) -> Entry:
        with self._lock:
            entry = self._touch(key)
            if entry is not None:
                return entry
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # racing first requests wait here; only the first one loads
            with self._lock:
                entry = self._touch(key)
                if entry is not None:
                    return entry
                self._loading.add(key)
            try:
                start = time.perf_counter()
                loaded = loader()
                seconds = time.perf_counter() - start
            finally:
                with self._lock:
                    self._loading.discard(key)
            logger.info(
                "loaded %s on %s (%s, %.1fM params, %.0f MB) in %.2f s",
                key, loaded.device, loaded.dtype, loaded.parameters / 1e6, loaded.memory_bytes / 2**20, seconds,
            )
            entry = Entry(loaded=loaded, load_seconds=seconds)
            with self._lock:
                self._entries[key] = entry
                # evict only after a successful load, so a failed load never costs the user a working model
                evicted = self._evict_over_limits(keep=key)
            for old in evicted:
                self._release(old)
            return entry

    def _touch(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            entry.last_used = time.monotonic()
        return entry

    # -- eviction --------------------------------------------------------------------------------------------
    def _evict_over_limits(self, keep: str) -> list[str]:
        evicted = []
        for key in list(self._entries):
            if key == keep:
                continue
            over_count = len(self._entries) > self.max_models
            over_memory = self.max_memory_bytes is not None and self.memory_bytes() > self.max_memory_bytes
            if not (over_count or over_memory):
                break
            self._entries.pop(key)
            evicted.append(key)
        return evicted

    def _release(self, key: str) -> None:
        release_memory()
        logger.info("unloaded %s", key)

    def unload(self, key: str) -> bool:
        """Drop `key` and release its memory. A request still using it finishes first, then memory is freed."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None:
            return False
        del entry
        self._release(key)
        return True

    def clear(self) -> None:
        """Unload every model."""
        for key in self.keys():
            self.unload(key)

    def _idle_loop(self) -> None:
        interval = max(0.05, min(30.0, (self.idle_unload_s or 1) / 4))
        while not self._closed.wait(interval):
            self.unload_idle()

    def unload_idle(self) -> list[str]:
        """Unload models that are not in use and were idle longer than `idle_unload_s`."""
        if not self.idle_unload_s:
            return []
        now = time.monotonic()
        with self._lock:
            idle = [k for k, e in self._entries.items() if e.in_use == 0 and now - e.last_used > self.idle_unload_s]
        return [k for k in idle if self.unload(k)]

    def close(self) -> None:
        """Stop the idle thread and unload everything."""
        self._closed.set()
        self.clear()

    # -- facts -----------------------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def loading(self) -> list[str]:
        """Keys being loaded right now."""
        with self._lock:
            return sorted(self._loading)

    def memory_bytes(self) -> int:
        with self._lock:
            return sum(e.loaded.memory_bytes for e in self._entries.values())

    def rows(self) -> list[CacheRow]:
        """A snapshot of what is loaded, most recently used last."""
        now = time.monotonic()
        with self._lock:
            return [
                CacheRow(
                    key=k, task=e.loaded.task, device=e.loaded.device, dtype=e.loaded.dtype,
                    parameters=e.loaded.parameters, memory_mb=round(e.loaded.memory_now() / 2**20, 1),
                    load_seconds=round(e.load_seconds, 2), idle_seconds=round(now - e.last_used, 1),
                    in_use=e.in_use, source=e.loaded.source, activity=_activity(e.loaded.value),
                    engine=e.loaded.engine,
                )
                for k, e in self._entries.items()
            ]


def _activity(value: Any) -> str:
    report = getattr(value, "activity", None)
    return report() if callable(report) else ""
