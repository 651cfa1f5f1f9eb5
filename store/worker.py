"""The background embedder: takes rows without a vector, embeds them in batches, writes each batch in one
transaction. A crash loses at most the batch in flight; the next start picks up the rows still without a vector."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from store.embeddings import Embedder, apply_torch_threads

logger = logging.getLogger(__name__)
MAX_EMBED_CHARS = 2000  # the model reads ~128 tokens; tokenizing megabytes would only waste time


class EmbedTarget(Protocol):
    """A table whose rows need vectors."""

    def pending(self, limit: int) -> list[tuple[int, str]]: ...

    def store_vectors(self, ids: list[int], vectors: np.ndarray) -> int: ...


class EmbedWorker:
    """One daemon thread draining `target`'s pending rows.

    Args:
        target: where the rows come from and their vectors go.
        embedder: turns texts into vectors.
        batch_size: rows per transaction (and per encode call).
        yield_to: while this returns True (foreground work running), the worker waits.
    """

    def __init__(self, target: EmbedTarget, embedder: Embedder, batch_size: int = 64, name: str = "embed",
                 yield_to: Callable[[], bool] | None = None):
        self.target, self.embedder, self.batch_size, self.name = target, embedder, batch_size, name
        self.error: str = ""  # the last failure, shown in the UI until a batch succeeds again
        # when set and true, foreground work (a generation) is running: background embedding waits for it
        self.yield_to = yield_to
        self.embedded = 0
        self._wake = threading.Event()
        self._idle = threading.Event()
        # counts wake() calls: idle is only declared when no wake came in since the empty look at the table,
        # else a row written between that look and `_idle.set()` would be reported as done
        self._wakes = 0
        self._wakes_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> EmbedWorker:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-worker", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """New rows were written: look for them now."""
        with self._wakes_lock:
            self._wakes += 1
            self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending (True) or `timeout` passes (False)."""
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self) -> int:
        """Embed and store one batch; returns how many rows were stored (0: nothing pending)."""
        rows = self.target.pending(self.batch_size)
        if not rows:
            return 0
        ids = [r[0] for r in rows]
        vectors = self.embedder.encode([r[1][:MAX_EMBED_CHARS] for r in rows])
        stored = self.target.store_vectors(ids, vectors)
        self.embedded += stored
        return max(stored, 1)

    def _run(self) -> None:
        apply_torch_threads()
        backoff = 1.0
        while not self._stop.is_set():
            if self.yield_to is not None and self.yield_to():
                self._stop.wait(0.25)  # on 2 cores, embedding beside a generation slows both
                continue
            wakes_seen = self._wakes
            try:
                done = self.run_once()
                self.error, backoff = "", 1.0
            except Exception as exc:  # keep the thread alive: the next batch (or a fixed model) may work
                logger.exception("%s worker: embedding failed", self.name)
                self.error = f"{type(exc).__name__}: {exc}"
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            if done == 0:
                with self._wakes_lock:
                    if self._wakes == wakes_seen:
                        self._idle.set()
                self._wake.wait(5.0)
                self._wake.clear()


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` passes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
