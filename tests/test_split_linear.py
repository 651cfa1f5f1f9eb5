"""CPU decoding paths for linear layers (split one row, packed copy for several): torch's numbers, same tokens."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from helpers import sharp_llama

from engines.batching import Batcher
from engines.params import GenerationParams
from engines.split_linear import MAX_ROWS, SplitLinear, pack_linears, split_linears, unsplit_linears, wanted_parts

GREEDY = GenerationParams(temperature=0, max_new_tokens=20, repetition_penalty=1.0)


def sharp_model(seed: int = 0):
    return sharp_llama(seed, context=512)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 48), (3, 48), (2, 1, 48), (4, 1, 48), (3, 1, 48), (7, 48), (MAX_ROWS, 48),
                                   (MAX_ROWS + 1, 48), (2, 40, 48)])
@pytest.mark.parametrize("parts", [2, 3, 4])
def test_split_linear_gives_torchs_numbers(shape, bias, parts):
    torch.manual_seed(1)
    layer = torch.nn.Linear(48, 96, bias=bias)
    x = torch.randn(*shape)
    expected = layer(x)
    assert split_linears(layer, parts) == 1 and type(layer) is SplitLinear
    got = layer(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_only_float32_cpu_layers_are_converted_and_only_even_outputs_split():
    model = torch.nn.Sequential(torch.nn.Linear(8, 10), torch.nn.Linear(10, 9), torch.nn.Linear(9, 8).half())
    assert split_linears(model, 2) == 2
    assert [type(m).__name__ for m in model] == ["SplitLinear", "SplitLinear", "Linear"]
    assert [m.split_parts for m in model[:2]] == [2, 1], "9 outputs do not split in 2: one row keeps torch's path"
    one_thread = torch.nn.Linear(8, 8)
    assert split_linears(one_thread, 1) == 1 and one_thread.split_parts == 1
    assert pack_linears(model, 10**9) > 0
    unsplit_linears(model)
    assert all(type(m) is torch.nn.Linear for m in model)
    assert not any("packed" in vars(m) or "split_parts" in vars(m) for m in model)


needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 48), (2, 48), (4, 1, 48), (3, 1, 48), (MAX_ROWS, 48), (MAX_ROWS + 1, 48),
                                   (2, 40, 48), (45, 48)])
@pytest.mark.parametrize("parts", [1, 2])
def test_packed_layers_give_torchs_numbers(shape, bias, parts):
    torch.manual_seed(2)
    layer = torch.nn.Linear(48, 96, bias=bias)
    x = torch.randn(*shape)
    expected = layer(x)
    split_linears(layer, parts)
    assert pack_linears(layer, 10**9) == 96 * 48 * 4, "the packed copy's bytes, for the memory report"
    assert layer.packed is not None
    got = layer(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_packing_stays_within_its_budget():
    model = torch.nn.Sequential(torch.nn.Linear(48, 96), torch.nn.Linear(96, 48))
    x = torch.randn(3, 48)
    expected = model(x)
    split_linears(model, 2)
    assert pack_linears(model, 2 * 48 * 96 * 4 - 1) == 0, "one byte short: nothing is packed"
    assert all(m.packed is None for m in model)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_parts_follow_the_thread_count():
    assert wanted_parts(1) == 1 and wanted_parts(2) == 2 and wanted_parts(64) == 8
    assert wanted_parts(None) == max(1, min(torch.get_num_threads(), 8))


def test_a_split_model_generates_the_same_greedy_tokens():
    model = sharp_model()
    ids = torch.tensor([[5, 9, 14, 3, 22, 8]])
    with torch.inference_mode():
        expected = model.generate(ids, max_new_tokens=30, do_sample=False, pad_token_id=0, eos_token_id=None)
        assert split_linears(model, 2) > 0
        got = model.generate(ids, max_new_tokens=30, do_sample=False, pad_token_id=0, eos_token_id=None)
        assert got.tolist() == expected.tolist()
        if torch.backends.mkldnn.is_available():
            pack_linears(model, 10**9)
            packed = model.generate(ids.repeat(3, 1), max_new_tokens=30, do_sample=False, pad_token_id=0,
                                    eos_token_id=None)
            assert packed.tolist() == expected.repeat(3, 1).tolist(), "3 rows: the packed path"


def test_a_split_model_batches_with_the_same_tokens_as_alone():
    model = sharp_model()
    prompts = [[5, 9, 14, 3], [7, 7, 21, 30, 2, 11, 40, 8, 19], [12], [33, 6, 17, 25, 28, 4]]

    def run(batch: int) -> list[list[int]]:
        batcher = Batcher(model, [], max_batch=batch)
        reqs = []
        for ids in prompts:
            reqs.append(batcher.submit(ids, GREEDY, seed=0, stop=threading.Event()))
            time.sleep(0.01)
        out = []
        for req in reqs:
            tokens = []
            while (item := req.out.get(timeout=30))[0] == "token":
                tokens.append(item[1])
            assert item[0] == "end", item
            out.append(tokens)
        return out

    plain = run(1)
    split_linears(model, 2)
    assert run(1) == plain
    assert run(4) == plain
    if torch.backends.mkldnn.is_available():
        assert pack_linears(model, 10**9) > 0
        assert run(4) == plain, "batches and prompts on the packed copy"
