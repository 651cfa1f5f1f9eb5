"""Request checks (ranges, rounding, memory refusal) and the PNG metadata round trip; no model needed."""

from __future__ import annotations

import pytest
from PIL import Image

from engines.image_meta import parse_a1111, read_png_meta, save_png
from engines.image_params import check_memory, parse_image_params


def test_defaults_and_rounding():
    p = parse_image_params("a red circle", width=70, height=64, steps="20", guidance_scale="4.5")
    assert (p.width, p.height, p.steps, p.guidance_scale) == (72, 64, 20, 4.5)
    assert p.rounded_from == (70, 64)
    assert parse_image_params("x", width=64, height=64).rounded_from is None


@pytest.mark.parametrize("field, value, words", [
    ("steps", 0, "steps must be between 1 and 150"),
    ("steps", "many", "steps must be a number"),
    ("steps", 2.5, "whole number"),
    ("guidance_scale", 31, "guidance_scale must be between"),
    ("guidance_scale", float("nan"), "guidance_scale"),
    ("guidance_scale", None, "guidance_scale must be a number"),
    ("width", 4096, "width must be between 32 and 2048"),
    ("num_images", 9, "num_images must be between 1 and 8"),
    ("scheduler", "Magic", "scheduler must be one of"),
])
def test_bad_values_are_refused_with_what_arrived(field, value, words):
    with pytest.raises(ValueError, match=words) as info:
        parse_image_params("a prompt", **{field: value})
    assert repr(value)[:4] in str(info.value) or field == "scheduler"


def test_empty_prompt_is_refused():
    with pytest.raises(ValueError, match="prompt is empty"):
        parse_image_params("   ")


def test_memory_estimate_refuses_huge_batches_and_allows_small_ones():
    huge = parse_image_params("x", width=2048, height=2048, num_images=8)
    with pytest.raises(ValueError, match=r"8 image\(s\) of 2048x2048 need about .* GiB, but only 16.0 GiB is free"):
        check_memory(huge, 16 * 2**30)
    check_memory(parse_image_params("x", width=512, height=512, num_images=1), 16 * 2**30)
    check_memory(parse_image_params("x", width=64, height=64, num_images=8), 512 * 2**20)


def test_png_metadata_round_trip(tmp_path):
    meta = {"prompt": "a small red circle", "negative_prompt": "blurry", "steps": 20, "guidance_scale": 4.0,
            "seed": 1234567890, "width": 64, "height": 64, "scheduler": "Euler a", "guidance_rescale": 0.7,
            "model": "hf-playground/tiny-t2i-64", "num_images": 1}
    path = save_png(Image.new("RGB", (64, 64), "white"), meta, tmp_path / "x.png")
    restored = read_png_meta(path)
    assert restored == {k: v for k, v in meta.items() if k != "num_images"}
    assert Image.open(path).text["parameters"].startswith("a small red circle\nNegative prompt: blurry\nSteps: 20")


def test_a1111_parameters_are_understood():
    text = ("a cat, detailed\nNegative prompt: ugly\n"
            "Steps: 30, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x768, Model: sd15")
    assert parse_a1111(text) == {"prompt": "a cat, detailed", "negative_prompt": "ugly", "steps": 30,
                                 "guidance_scale": 7.0, "seed": 42, "scheduler": "Euler a", "model": "sd15",
                                 "width": 512, "height": 768}


def test_png_without_metadata(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert read_png_meta(tmp_path / "plain.png") is None
