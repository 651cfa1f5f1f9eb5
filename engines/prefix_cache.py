"""Keys and values of prompts already seen, so that a prompt starting the same way is prefilled only from where it
differs: a chat's next message (the conversation so far is the start of its next prompt) and a shared system prompt.

Entries belong to an owner (a person, an API key): a cached prefix only ever serves its own owner, since how fast an
answer starts would otherwise tell one person what another had sent. The batch worker is the only user, so there is
no lock.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

import torch

MIN_TOKENS = 16  # shorter shared starts are not worth a separate prefill


@dataclass(frozen=True)
class Prefix:
    """The first `length` tokens' keys and values, one (keys, values) pair of (1, heads, length, dim) per layer."""

    length: int
    layers: list[tuple[torch.Tensor, torch.Tensor]]


class PrefixCache:
    """Least recently used (owner, tokens) -> keys and values, within `max_bytes`.

    Args:
        max_bytes: memory the entries may take together; 0 keeps nothing.
        max_entries: most entries per owner (a long conversation's older, shorter versions are dropped anyway).
    """

    def __init__(self, max_bytes: int, max_entries: int = 8):
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self._entries: OrderedDict[tuple[str, tuple[int, ...]], list[tuple[torch.Tensor, torch.Tensor]]] = \
            OrderedDict()
        self._bytes = 0
        self.hits = self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def find(self, owner: str, ids: list[int]) -> Prefix | None:
        """The longest cached start of `ids` for `owner`, leaving at least one token to prefill; None if too short."""
        best_key, best, tokens = None, 0, tuple(ids)
        for key in self._entries:
            if key[0] != owner:
                continue
            shared = len(os.path.commonprefix([key[1], tokens]))
            if shared > best:
                best_key, best = key, shared
        best = min(best, len(ids) - 1)  # the last prompt token is run again for its scores
        if best_key is None or best < MIN_TOKENS:
            return None
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best
        layers = self._entries[best_key]
        return Prefix(best, [(k[:, :, :best], v[:, :, :best]) for k, v in layers])

    def put(self, owner: str, ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep `ids`' keys and values (copied), replacing the owner's entries that are a start of `ids`."""
        if len(ids) < MIN_TOKENS or self.max_bytes <= 0:
            return
        if any(k.shape[2] != len(ids) or v.shape[2] != len(ids) for k, v in layers):
            raise ValueError(f"keys and values for {len(ids)} tokens expected, got {layers[0][0].shape[2]}")
        tokens = tuple(ids)
        for key in [k for k in self._entries if k[0] == owner and tokens[:len(k[1])] == k[1]]:
            self._drop(key)
        owned = [k for k in self._entries if k[0] == owner]
        while len(owned) >= self.max_entries:
            self._drop(owned.pop(0))
        kept = [(k.clone(), v.clone()) for k, v in layers]
        size = _nbytes(kept)
        if size > self.max_bytes:
            return
        while self._bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[(owner, tokens)] = kept
        self._bytes += size

    def _drop(self, key: tuple[str, tuple[int, ...]]) -> None:
        self._bytes -= _nbytes(self._entries.pop(key))


def _nbytes(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
