"""A deterministic bag-of-words embedder: fast, no model, same text -> same vector."""

from __future__ import annotations

import hashlib
import re
import time

import numpy as np


class HashEmbedder:
    """Each word adds a fixed pseudo-random direction; texts sharing words point the same way."""

    def __init__(self, dim: int = 384, name: str = "hash-embedder", delay_s: float = 0.0):
        self.dim, self.name, self.delay_s = dim, name, delay_s
        self.calls = 0

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i] += self._word(word)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
