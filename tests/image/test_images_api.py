"""/v1/images/generations through the official `openai` client, on the real diffusers path with a micro pipeline."""

from __future__ import annotations

import base64
import dataclasses
import io

import openai
import pytest
from fakes import FakeTextEngine
from helpers import fake_services, free_port, start_app
from PIL import Image

from engines.image_meta import read_png_meta


@pytest.fixture(scope="module")
def api(image_config, engine, tiny_sd):
    config = dataclasses.replace(image_config, port=free_port())  # a server of its own
    demo, url = start_app(fake_services(config, FakeTextEngine(), image=engine))
    yield openai.OpenAI(base_url=url + "v1", api_key="none", max_retries=0, timeout=120), str(tiny_sd)
    demo.close()


def test_images_come_back_as_pngs_carrying_their_settings(api):
    client, model = api
    result = client.images.generate(model=model, prompt="a red square", n=2, size="32x32",
                                    extra_body={"steps": 2, "seed": 11})
    assert len(result.data) == 2
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in result.data]
    assert [im.size for im in images] == [(32, 32), (32, 32)]
    metas = [read_png_meta(im) for im in images]
    assert [m["seed"] for m in metas] == [11, 12] and metas[0]["prompt"] == "a red square"
    again = client.images.generate(model=model, prompt="a red square", n=1, size="32x32",
                                   extra_body={"steps": 2, "seed": 12})
    assert again.data[0].b64_json == result.data[1].b64_json  # image i used seed + i


def test_bad_image_requests_are_refused_with_the_reason(api):
    client, model = api
    with pytest.raises(openai.BadRequestError, match="size must look like 512x512"):
        client.images.generate(model=model, prompt="x", size="big")
    with pytest.raises(openai.BadRequestError, match="steps must be"):
        client.images.generate(model=model, prompt="x", size="32x32", extra_body={"steps": 0})
    with pytest.raises(openai.BadRequestError, match="prompt is empty"):
        client.images.generate(model=model, prompt="  ", size="32x32")
