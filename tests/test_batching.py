"""Continuous batching on a tiny random Llama: same tokens alone and in a batch, per-request stop, failures, limits."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from helpers import sharp_llama

from engines.batching import Batcher, QueueFull, probe
from engines.params import GenerationParams
from errors import Unavailable

GREEDY = GenerationParams(temperature=0, max_new_tokens=24, repetition_penalty=1.0)
PROMPTS = [[5, 9, 14, 3], [7, 7, 21, 30, 2, 11, 40, 8, 19], [12], [33, 6, 17, 25, 28, 4, 50, 61, 1, 2, 3, 4, 5, 6]]


@pytest.fixture(scope="module")
def model():
    return sharp_llama()


def collect(req, timeout: float = 30) -> list[int]:
    tokens = []
    while True:
        kind, value, _ = req.out.get(timeout=timeout)
        if kind == "end":
            return tokens
        if kind == "error":
            raise value
        tokens.append(value)


def alone(model, ids, params=GREEDY) -> list[int]:
    return collect(Batcher(model, [], max_batch=1).submit(ids, params, seed=params.seed, stop=threading.Event()))


def test_the_tiny_llama_batches(model):
    assert probe(model)


def test_greedy_alone_matches_transformers_generate(model):
    ids = PROMPTS[1]
    expected = model.generate(torch.tensor([ids]), max_new_tokens=GREEDY.max_new_tokens, do_sample=False,
                              pad_token_id=0, eos_token_id=None)[0, len(ids):].tolist()
    assert alone(model, ids) == expected


def test_greedy_tokens_are_the_same_alone_and_in_a_batch_joined_at_any_step(model):
    solo = [alone(model, ids) for ids in PROMPTS]
    batcher = Batcher(model, [], max_batch=4)
    reqs = []
    for ids in PROMPTS:  # each joins a batch that is already running
        reqs.append(batcher.submit(ids, GREEDY, seed=0, stop=threading.Event()))
        time.sleep(0.02)
    assert [collect(r) for r in reqs] == solo
    assert batcher.stats().steps < sum(len(s) for s in solo), "the requests shared forward passes"


def test_several_requests_joining_a_running_batch_together_keep_their_tokens(model):
    solo = [alone(model, ids) for ids in PROMPTS]
    batcher = Batcher(model, [], max_batch=4)
    first = batcher.submit(PROMPTS[0], GREEDY, seed=0, stop=threading.Event())
    head = [first.out.get(timeout=30)[1] for _ in range(3)]
    with batcher._cond:  # the worker waits at its next step, so the three arrive together
        later = [batcher.submit(ids, GREEDY, seed=0, stop=threading.Event()) for ids in PROMPTS[1:]]
    assert [head + collect(first), *[collect(r) for r in later]] == solo


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(model):
    params = GenerationParams(temperature=1.3, top_k=40, top_p=0.9, repetition_penalty=1.2, max_new_tokens=16, seed=7)
    solo = alone(model, PROMPTS[0], params)
    batcher = Batcher(model, [], max_batch=4)
    reqs = [batcher.submit(ids, params, seed=7, stop=threading.Event()) for ids in PROMPTS]
    assert collect(reqs[0]) == solo


def test_stopping_one_request_leaves_the_others_unchanged(model):
    solo = [alone(model, ids) for ids in PROMPTS]
    batcher = Batcher(model, [], max_batch=4)
    stops = [threading.Event() for _ in PROMPTS]
    reqs = [batcher.submit(ids, GREEDY, seed=0, stop=stop) for ids, stop in zip(PROMPTS, stops, strict=False)]
    first = reqs[1].out.get(timeout=30)
    assert first[0] == "token"
    stops[1].set()
    stopped = [first[1], *collect(reqs[1])]
    assert len(stopped) < GREEDY.max_new_tokens
    assert [collect(r) for i, r in enumerate(reqs) if i != 1] == [s for i, s in enumerate(solo) if i != 1]


def test_a_request_that_fails_does_not_break_the_others(model):
    solo = alone(model, PROMPTS[0])
    batcher = Batcher(model, [], max_batch=4)
    bad = batcher.submit([5, 10**5], GREEDY, seed=0, stop=threading.Event())  # a token id past the vocabulary
    good = batcher.submit(PROMPTS[0], GREEDY, seed=0, stop=threading.Event())
    with pytest.raises(Exception):
        collect(bad)
    assert collect(good) == solo


def test_a_stopped_request_frees_its_place_within_a_second(model):
    batcher = Batcher(model, [], max_batch=2)
    long = GenerationParams(temperature=0, max_new_tokens=1000, repetition_penalty=1.0)
    stop = threading.Event()
    req = batcher.submit(PROMPTS[0], long, seed=0, stop=stop)
    req.out.get(timeout=30)
    stop.set()
    deadline = time.monotonic() + 1.0
    while batcher.stats().running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher.stats().running == 0


def test_waiting_requests_are_limited_and_told_their_place(model):
    batcher = Batcher(model, [], max_batch=1, max_waiting=2)
    long = GenerationParams(temperature=0, max_new_tokens=1000, repetition_penalty=1.0)
    stops = [threading.Event() for _ in range(3)]
    running = batcher.submit(PROMPTS[0], long, seed=0, stop=stops[0])
    running.out.get(timeout=30)  # it is in the batch now
    waiting = [batcher.submit(PROMPTS[1], long, seed=0, stop=stops[1]),
               batcher.submit(PROMPTS[2], long, seed=0, stop=stops[2])]
    assert [batcher.position(r) for r in waiting] == [1, 2]
    with pytest.raises(QueueFull, match="2 requests are already waiting"):
        batcher.submit(PROMPTS[3], long, seed=0, stop=threading.Event())
    for stop in stops:
        stop.set()
    for req in [running, *waiting]:
        collect(req)


def test_closing_ends_every_request_and_waits_for_the_worker(model):
    batcher = Batcher(model, [], max_batch=1)
    long = GenerationParams(temperature=0, max_new_tokens=2000, repetition_penalty=1.0)
    running = batcher.submit(PROMPTS[0], long, seed=0, stop=threading.Event())
    waiting = batcher.submit(PROMPTS[1], long, seed=0, stop=threading.Event())
    assert running.out.get(timeout=30)[0] == "token"
    batcher.close()
    assert batcher._thread is None, "the worker has left"
    for req in (running, waiting):
        with pytest.raises(Unavailable, match="shutting down"):
            collect(req)
    with pytest.raises(Unavailable, match="shutting down"):
        batcher.submit(PROMPTS[0], GREEDY, seed=0, stop=threading.Event())
