"""Reusing an owner's earlier prompts: the longest shared start, owners kept apart, memory bounded, same tokens."""

from __future__ import annotations

import threading

import pytest
import torch
from helpers import sharp_llama

from engines.batching import Batcher
from engines.params import GenerationParams
from engines.prefix_cache import MIN_TOKENS, PrefixCache

GREEDY = GenerationParams(temperature=0, max_new_tokens=12, repetition_penalty=1.0)


def kv(length: int, value: float = 0.0, layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.full((1, 2, length, 4), value), torch.full((1, 2, length, 4), -value)) for _ in range(layers)]


def test_the_longest_shared_start_of_the_same_owner_is_found():
    cache = PrefixCache(max_bytes=10**8)
    base = list(range(100, 140))
    cache.put("ann", base[:20], kv(20, 1.0))
    cache.put("ann", [7] * 30, kv(30, 2.0))
    found = cache.find("ann", base[:25] + [1, 2, 3])
    assert found is not None and found.length == 20
    assert found.layers[0][0].shape == (1, 2, 20, 4) and float(found.layers[0][0][0, 0, 0, 0]) == 1.0
    assert cache.find("bob", base) is None, "another owner's prompt never serves"
    assert cache.find("ann", base[:MIN_TOKENS - 1] + [0] * 10) is None, "too short a shared start"
    assert cache.find("ann", base[:20]).length == 19, "the last prompt token is always run again"
    assert cache.hits == 2 and cache.reused_tokens == 39


def test_a_longer_version_replaces_its_start_and_memory_stays_bounded():
    one = sum(t.numel() * 4 for pair in kv(20) for t in pair)
    cache = PrefixCache(max_bytes=3 * one)
    cache.put("ann", list(range(20)), kv(20))
    cache.put("ann", list(range(30)), kv(30))
    assert len(cache) == 1, "the conversation's earlier, shorter start is dropped"
    cache.put("bob", list(range(50, 70)), kv(20))
    cache.put("cy", list(range(80, 100)), kv(20))
    assert cache.bytes <= 3 * one and cache.find("ann", list(range(40))) is None, "the least recently used went"
    cache.put("dee", list(range(10**6, 10**6 + 200)), kv(200))
    assert cache.find("dee", list(range(10**6, 10**6 + 201))) is None, "an entry larger than the budget is not kept"
    limited = PrefixCache(max_bytes=10**8, max_entries=2)
    for start in (0, 100, 200):
        limited.put("ann", list(range(start, start + 20)), kv(20))
    assert len(limited) == 2 and limited.find("ann", list(range(20)) + [5]) is None
    with pytest.raises(ValueError, match="for 20 tokens expected, got 19"):
        cache.put("ann", list(range(20)), kv(19))


@pytest.fixture(scope="module")
def model():
    return sharp_llama()


def run(batcher: Batcher, ids: list[int], owner: str) -> list[int]:
    req = batcher.submit(ids, GREEDY, seed=0, stop=threading.Event(), owner=owner)
    tokens = []
    while (item := req.out.get(timeout=30))[0] == "token":
        tokens.append(item[1])
    assert item[0] == "end", item
    return tokens


def test_a_conversations_next_prompt_is_prefilled_from_where_it_differs(model, monkeypatch):
    plain = Batcher(model, [], max_batch=4)
    cached = Batcher(model, [], max_batch=4, prefix_bytes=10**8)
    widths: list[int] = []
    forward = cached._forward
    monkeypatch.setattr(cached, "_forward", lambda ids, *a: widths.append(ids.shape[1]) or forward(ids, *a))

    first = [int(t) for t in torch.randint(0, 64, (30,), generator=torch.Generator().manual_seed(3))]
    reply = run(cached, first, "ann")
    assert reply == run(plain, first, "ann")
    follow_up = first + reply[:-1] + [9, 10, 11]  # the conversation so far, then a new message
    widths.clear()
    assert run(cached, follow_up, "ann") == run(plain, follow_up, "ann"), "same tokens as a whole prefill"
    assert widths[0] == 3, f"only the new message's tokens are prefilled, got {widths[0]}"
    assert cached.stats().reused_tokens == len(first) + len(reply) - 1
    assert cached.stats().prefix_bytes == cached.prefixes.bytes > 0, "the Models tab shows what the cache holds"

    widths.clear()
    assert run(cached, first, "ann") == reply and widths[0] == 1, "the same prompt again: only its last token"

    widths.clear()
    assert run(cached, follow_up, "bob") == run(plain, follow_up, "bob")
    assert widths[0] == len(follow_up), "another owner's conversation is prefilled whole"
