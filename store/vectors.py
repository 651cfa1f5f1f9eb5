"""Vectors for semantic search: a float16 matrix per collection, in memory, memory-mapped from a .npy cache.

SQLite holds the truth (one float32 BLOB per chunk). The search copy is float16: half the memory and half the
memory traffic of an exact scan (100k chunks: 18 -> 12 ms, and the query's own embedding slows less after it),
for cosine errors around 1e-3. A search needs the matrix of a collection: it comes from memory when
current, else from `<key>.npy` (memory-mapped, so a restart does not read 1.5 GB of blobs) plus the rows added since,
else from SQLite in full. A row count check after every update catches anything an incremental load could miss.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

Rows = tuple[np.ndarray, np.ndarray]  # ids (int64, ascending), vectors (n x dim)
DTYPE = np.float16
PERSIST_EVERY = 5_000  # rows added in memory before the .npy cache is rewritten


def rows_from_blobs(rows: list[tuple[int, bytes]], dim: int) -> Rows:
    """(id, blob) pairs from SQLite as an id array and a matrix."""
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    return ids, matrix.astype(DTYPE)


def similarities(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """matrix @ query as float32; float16 matrices go through torch (numpy has no fast float16 product)."""
    if matrix.dtype == np.float16 and "torch" in sys.modules:
        import torch

        with torch.inference_mode():
            return torch.mv(torch.from_numpy(matrix), torch.from_numpy(query.astype(np.float16))).float().numpy()
    return np.asarray(matrix, dtype=np.float32) @ query.astype(np.float32)


def nearest(matrix: np.ndarray, query: np.ndarray, k: int, min_similarity: float = -1.0) -> list[tuple[int, float]]:
    """Positions and cosine similarities of the k rows most similar to `query` (all unit length), best first."""
    if len(matrix) == 0 or k <= 0:
        return []
    sims = similarities(matrix, query)
    k = min(k, len(sims))
    best = np.argpartition(-sims, k - 1)[:k]
    best = best[np.argsort(-sims[best], kind="stable")]
    return [(int(i), float(sims[i])) for i in best if sims[i] >= min_similarity]


@dataclass
class _Cached:
    version: int
    ids: np.ndarray
    matrix: np.ndarray
    persisted_rows: int


class VectorCache:
    """Current matrices per key ('c<collection id>'), persisted as memory-mapped .npy files under `folder`."""

    def __init__(self, folder: Path | None, dim: int = 384):
        self.folder = Path(folder) if folder else None
        self.dim = dim
        self._cached: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def get(self, key: str, version: int, count: int, load_after: Callable[[int], Rows]) -> Rows:
        """The (ids, matrix) of `key` at `version`, which holds `count` vectors.

        Args:
            load_after: rows with id greater than the argument, ascending (-1: all rows).
        """
        with self._lock:
            cached = self._cached.get(key) or self._from_file(key)
            if cached is not None and cached.version == version and len(cached.ids) == count:
                self._cached[key] = cached
                return cached.ids, cached.matrix
            if cached is not None and len(cached.ids) < count:
                last = int(cached.ids[-1]) if len(cached.ids) else -1
                ids, matrix = load_after(last)
                if len(cached.ids) + len(ids) == count:
                    cached = _Cached(version, np.concatenate([cached.ids, ids]),
                                     np.concatenate([cached.matrix, matrix]), cached.persisted_rows)
                else:
                    cached = None
            else:
                cached = None
            if cached is None:  # deletions, or a file from another state: read everything again
                ids, matrix = load_after(-1)
                cached = _Cached(version, ids, matrix, 0)
            self._cached[key] = cached
            if count - cached.persisted_rows >= PERSIST_EVERY or (cached.persisted_rows == 0 and count):
                self._persist(key, cached)
            return cached.ids, cached.matrix

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        assert self.folder is not None
        return self.folder / f"{key}.npy", self.folder / f"{key}.ids.npy", self.folder / f"{key}.json"

    def _from_file(self, key: str) -> _Cached | None:
        if self.folder is None:
            return None
        mat_path, ids_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            ids = np.load(ids_path)
            matrix = np.load(mat_path, mmap_mode="c")  # copy-on-write: writable for torch, never written
        except (OSError, ValueError):
            return None
        if matrix.shape != (len(ids), self.dim) or matrix.dtype != DTYPE or meta.get("rows") != len(ids):
            return None
        return _Cached(int(meta["version"]), ids, matrix, len(ids))

    def _persist(self, key: str, cached: _Cached) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        mat_path, ids_path, meta_path = self._paths(key)
        meta_path.unlink(missing_ok=True)  # the meta file is written last: without it the pair is ignored
        for path, array in ((mat_path, cached.matrix), (ids_path, cached.ids)):
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, np.ascontiguousarray(array))  # ids int64, matrix float16
            os.replace(tmp, path)
        meta_path.write_text(json.dumps({"version": cached.version, "rows": len(cached.ids)}))
        cached.persisted_rows = len(cached.ids)

    def drop(self, key: str) -> None:
        """Forget a key and delete its files (its collection was deleted)."""
        with self._lock:
            self._cached.pop(key, None)
            if self.folder is not None:
                for path in self._paths(key):
                    path.unlink(missing_ok=True)
