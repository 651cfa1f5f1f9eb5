"""The embedded model generating through the launched app, driven with gradio_client (as an API user would)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from engines.image_meta import read_png_meta

PROMPT = "a large red circle in the center on a white background"


def client(url: str) -> Client:
    return Client(url, verbose=False)


def generate(c: Client, **kw):
    values = dict(prompt=PROMPT, negative_prompt="", model="hf-playground/tiny-t2i-64", steps=20, guidance_scale=4.0,
                  seed=3, width=64, height=64, num_images=2, scheduler="default")
    values.update(kw)
    return c.predict(**values, api_name="/text_to_image")


def main_colour(path: str) -> np.ndarray:
    x = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    fg = np.abs(x - np.median(x[0], axis=0)).max(-1) > 60
    assert fg.sum() > 20, "nothing was drawn"
    return np.median(x[fg], axis=0)


def test_endpoints_are_named(image_app):
    names = set(client(image_app).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/text_to_image", "/interrupt_image", "/restore_image_settings"} <= names


def test_embedded_model_draws_what_was_asked_and_the_png_remembers(image_app):
    gallery, seed, info = generate(client(image_app))
    assert seed == 3 and info["seeds"] == [3, 4] and info["model"] == "hf-playground/tiny-t2i-64"
    path = gallery[0]["image"]
    assert Image.open(path).size == (64, 64)
    r, g, b = main_colour(path)
    assert r > 150 and g < 110 and b < 110, f"expected a red shape, got RGB {r, g, b}"
    meta = read_png_meta(path)
    assert meta["prompt"] == PROMPT and meta["seed"] == 3 and meta["steps"] == 20
    assert read_png_meta(gallery[1]["image"])["seed"] == 4
    # dropping the PNG back restores the prompt and the settings
    restored = client(image_app).predict(handle_file(path), api_name="/restore_image_settings")
    assert restored[0] == PROMPT and 3 in restored and 20 in restored


def test_interrupt_returns_early_and_the_next_run_completes(image_app):
    c = client(image_app)
    generate(c, steps=1, num_images=1)  # loaded, so the interrupt lands mid-run rather than mid-load
    job = c.submit(**dict(prompt=PROMPT, negative_prompt="", model="hf-playground/tiny-t2i-64", steps=150,
                          guidance_scale=4.0, seed=1, width=64, height=64, num_images=4, scheduler="default"),
                   api_name="/text_to_image")
    time.sleep(1.5)
    start = time.perf_counter()
    assert c.predict(api_name="/interrupt_image") == "interrupted"
    _, _, info = job.result(timeout=30)
    assert info["interrupted"] and info["steps_done"] < 150
    assert time.perf_counter() - start < 5, str(info)
    _, _, info = generate(c, steps=3, num_images=1)
    assert info["steps_done"] == 3 and not info["interrupted"]


@pytest.mark.parametrize("kw, message", [
    (dict(steps="lots"), "steps must be a number"),
    (dict(guidance_scale=99), "guidance_scale must be between"),
    (dict(width=2048, height=2048, num_images=8), "lower the size or the number of images"),
])
def test_bad_requests_are_refused_with_a_message(image_app, kw, message):
    with pytest.raises(AppError, match=message):
        generate(client(image_app), **kw)


def test_sizes_are_rounded_to_multiples_of_8(image_app):
    gallery, _, info = generate(client(image_app), width=70, height=60, num_images=1, steps=2)
    assert info["size"] == "72x64" and Image.open(gallery[0]["image"]).size == (72, 64)


def test_a_non_image_model_is_named(image_app, tiny_llama):
    with pytest.raises(AppError, match="llama model"):
        generate(client(image_app), model=str(tiny_llama))


def test_progress_goes_to_the_page_at_most_ten_times_a_second_and_always_at_the_end():
    from ui.image_tab import step_reporter

    shown = []

    def progress(value, desc="", unit=""):
        shown.append(value)

    report = step_reporter(progress)
    for done in range(1, 21):  # a fast model: twenty steps in well under 0.1 s
        report(done, 20)
    assert shown == [(20, 20)]
    shown.clear()
    report = step_reporter(progress, every_s=0.0)
    for done in range(1, 4):
        report(done, 3)
    assert shown == [(1, 3), (2, 3), (3, 3)]
    shown.clear()
    report = step_reporter(progress, every_s=0.05)
    time.sleep(0.06)
    report(1, 3)
    assert shown == [(1, 3)], "a slow step is shown at once"
