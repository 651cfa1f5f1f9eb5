"""Constrained output that is always valid UTF-8: a guard over xgrammar's token mask (torch path).

xgrammar 0.2.9 checks that a string's bytes have UTF-8's shape but not its value ranges, so a constrained reply could
hold an overlong or surrogate sequence (E0 85 A5 came out of a JSON string in 9 of 300 sampled replies of a random
test model). Python decodes such bytes as replacement characters: the reply is no longer the text the grammar
allowed, and a `maxLength` can break. The guard keeps, of the tokens the grammar allows, those whose bytes continue the
reply as valid UTF-8 (RFC 3629's table of well-formed byte sequences).
"""

from __future__ import annotations

import numpy as np

State = tuple[int, int, int]  # continuation bytes still needed, lowest and highest value the next one may take
READY: State = (0, 0, 0)  # between characters


def _after_lead(byte: int) -> State | None:
    if 0xC2 <= byte <= 0xDF:
        return (1, 0x80, 0xBF)
    if byte == 0xE0:
        return (2, 0xA0, 0xBF)  # no overlong three-byte forms
    if byte == 0xED:
        return (2, 0x80, 0x9F)  # no surrogates
    if 0xE1 <= byte <= 0xEF:
        return (2, 0x80, 0xBF)
    if byte == 0xF0:
        return (3, 0x90, 0xBF)  # no overlong four-byte forms
    if 0xF1 <= byte <= 0xF3:
        return (3, 0x80, 0xBF)
    if byte == 0xF4:
        return (3, 0x80, 0x8F)  # nothing past U+10FFFF
    return None  # C0, C1, F5-FF never start a character; 80-BF only continue one


def advance(state: State, data: bytes) -> State | None:
    """The state after `data` follows `state`, or None when the text would not be valid UTF-8."""
    need, low, high = state
    for byte in data:
        if need:
            if not low <= byte <= high:
                return None
            need -= 1
            low, high = (0x80, 0xBF) if need else (0, 0)
        elif byte >= 0x80:
            after = _after_lead(byte)
            if after is None:
                return None
            need, low, high = after
    return (need, low, high)


class Utf8Table:
    """A model's token bytes and, per state met so far, the tokens that keep the text valid (packed as xgrammar's
    bitmask: bit j of word w is token 32w + j)."""

    def __init__(self, token_bytes: list[bytes]):
        self.token_bytes = token_bytes
        self._allowed: dict[tuple[State, int], np.ndarray] = {}

    def bytes_of(self, token: int) -> bytes:
        return self.token_bytes[token] if token < len(self.token_bytes) else b""

    def allowed(self, state: State, words: int) -> np.ndarray:
        key = (state, words)
        if key not in self._allowed:  # a few states per model, each one pass over the vocabulary
            ok = np.ones(words * 32, dtype=bool)  # ids past the vocabulary: the grammar's mask decides
            for token, data in enumerate(self.token_bytes[: words * 32]):
                ok[token] = not data or advance(state, data) is not None
            self._allowed[key] = np.packbits(ok.reshape(-1, 32), axis=1, bitorder="little").view("<i4").ravel()
        return self._allowed[key]


class Utf8Matcher:
    """An xgrammar GrammarMatcher whose token mask also keeps the reply valid UTF-8 (the batcher's interface)."""

    def __init__(self, matcher, table: Utf8Table):
        self.matcher, self.table, self.state = matcher, table, READY

    def fill_next_token_bitmask(self, bitmask, index: int) -> None:
        import torch

        self.matcher.fill_next_token_bitmask(bitmask, index)
        row = bitmask[index]
        guarded = row & torch.from_numpy(self.table.allowed(self.state, row.shape[0]))
        if bool(guarded.any()):  # never leave a row with no token: then the grammar's own mask stands
            row.copy_(guarded)

    def accept_token(self, token: int) -> bool:
        if not self.matcher.accept_token(token):
            return False
        self.state = advance(self.state, self.table.bytes_of(token)) or READY
        return True

    def is_terminated(self) -> bool:
        return self.matcher.is_terminated()
