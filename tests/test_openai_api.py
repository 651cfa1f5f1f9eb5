"""The OpenAI-compatible API through the official `openai` client, on the real engine with a tiny random Llama."""

from __future__ import annotations

import base64
import threading
import time

import httpx
import numpy as np
import openai
import pytest
from fakes import FakeTextEngine
from helpers import fake_services, make_config, start_app


@pytest.fixture(scope="module")
def served(tmp_path_factory, models_root, sharp_llama):
    from engines.cache import ModelCache
    from engines.device import choose_placement
    from engines.resolve import HubProbe, ModelResolver
    from engines.text import TextEngine

    config = make_config(tmp_path_factory.mktemp("api"), models_root)
    resolver = ModelResolver((models_root,), config.models_dir, HubProbe(offline=True))
    engine = TextEngine(ModelCache(max_models=2), resolver, choose_placement("cpu", "float32"), max_batch=4)
    services = fake_services(config, engine)
    demo, url = start_app(services)
    yield services, url, str(sharp_llama)
    demo.close()


def client(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "v1", api_key=key, max_retries=0, timeout=60)


def ask(api: openai.OpenAI, model: str, content: str, **kw):
    return api.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                       temperature=0, max_tokens=kw.pop("max_tokens", 12), **kw)


def test_models_lists_the_catalog_and_the_embedder(served):
    services, url, _ = served
    ids = [m.id for m in client(url).models.list()]
    assert services.catalog.default("chat") in ids and services.embedder.name in ids


def test_chat_completion_matches_the_engine_and_reports_usage(served):
    services, url, model = served
    from engines.params import GenerationParams

    reply = ask(client(url), model, "hello there")
    direct = "".join(u.delta for u in services.text.chat(
        model, [{"role": "user", "content": "hello there"}], GenerationParams(temperature=0, max_new_tokens=12)))
    assert reply.choices[0].message.content == direct and direct
    assert reply.choices[0].finish_reason in {"stop", "length"}
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 3


def test_chat_streams_the_same_text_in_pieces_with_usage(served):
    _, url, model = served
    whole = ask(client(url), model, "tell me a story", max_tokens=20).choices[0].message.content
    chunks = list(ask(client(url), model, "tell me a story", max_tokens=20, stream=True,
                      stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == whole and len(pieces) > 2
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_completions_stream_stop_strings_and_logprobs(served):
    _, url, model = served
    api = client(url)
    full = api.completions.create(model=model, prompt="once upon a time", max_tokens=16, temperature=0, logprobs=1)
    text = full.choices[0].text
    assert text and len(full.choices[0].logprobs.tokens) == 16
    assert all(lp <= 0 for lp in full.choices[0].logprobs.token_logprobs)
    streamed = "".join(c.choices[0].text for c in api.completions.create(
        model=model, prompt="once upon a time", max_tokens=16, temperature=0, stream=True))
    assert streamed == text
    stop = text.strip()[3:6]
    cut = api.completions.create(model=model, prompt="once upon a time", max_tokens=16, temperature=0, stop=[stop])
    assert cut.choices[0].text == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop", (text, stop, cut)


def test_embeddings_as_floats_and_base64(served):
    services, url, _ = served
    api = client(url)
    expected = services.embedder.encode(["a cat", "a dog"])
    floats = api.embeddings.create(model=services.embedder.name, input=["a cat", "a dog"], encoding_format="float")
    assert np.allclose([d.embedding for d in floats.data], expected, atol=1e-6)
    raw = httpx.post(url + "v1/embeddings", json={"input": "a cat", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype=np.float32)
    assert np.allclose(decoded, expected[0], atol=1e-6)
    assert np.allclose(api.embeddings.create(model=services.embedder.name, input="a cat").data[0].embedding,
                       expected[0], atol=1e-6)  # the client's default asks for base64 and decodes it


def test_bad_requests_get_openai_errors_that_say_what_is_wrong(served):
    _, url, model = served
    api = client(url)
    with pytest.raises(openai.NotFoundError, match="no-such/model"):
        ask(api, "no-such/model", "hi")
    with pytest.raises(openai.BadRequestError, match="temperature must be between 0 and 2"):
        api.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], temperature=5)
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        api.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], n=2)
    with pytest.raises(openai.BadRequestError, match="messages is empty"):
        api.chat.completions.create(model=model, messages=[])
    with pytest.raises(openai.NotFoundError, match="not served for embeddings"):
        api.embeddings.create(model="text-embedding-3-small", input="x")


def test_concurrent_streams_share_the_batch_and_keep_their_own_text(served):
    services, url, model = served
    questions = ["hello", "what is the time", "tell me about cats and dogs", "a"]
    alone = [ask(client(url), model, q, max_tokens=24).choices[0].message.content for q in questions]
    results: list[str] = [""] * len(questions)

    def stream(i: int) -> None:
        chunks = ask(client(url), model, questions[i], max_tokens=24, stream=True)
        results[i] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == alone
    deadline = time.monotonic() + 1  # a stream's last token goes out just before its rows leave the batch
    while services.text.load(model).batcher.stats().running and time.monotonic() < deadline:
        time.sleep(0.01)
    row = next(r for r in services.text.cache.rows() if r.key == model)  # what the Models tab shows
    assert row.activity.startswith("0 running, 0 waiting (batch of up to 4;")


def test_a_client_that_disconnects_frees_its_place_within_a_second(served):
    services, url, model = served
    batcher = services.text.load(model).batcher
    body = {"model": model, "prompt": "once upon a time", "max_tokens": 500,
            "temperature": 0, "stream": True}
    with httpx.stream("POST", url + "v1/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert batcher.stats().running == 1
        assert services.registry.idle_seconds() == 0  # background embedding waits for API generations too
    deadline = time.monotonic() + 1.0
    while batcher.stats().running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert batcher.stats().running == 0


@pytest.fixture
def guarded(tmp_path, models_root):
    """An app with API keys and a rate limit of 3 requests per minute, around a fake engine."""
    config = make_config(tmp_path, models_root, api_keys=("sk-test-1",), rate_limit_per_min=3)
    demo, url = start_app(fake_services(config, FakeTextEngine(reply="fine thanks")))
    yield url
    demo.close()


def test_keys_are_required_and_rate_limits_refuse_with_retry_after(guarded):
    with pytest.raises(openai.AuthenticationError, match="invalid or missing API key"):
        ask(client(guarded, "wrong"), "m", "hi")
    api = client(guarded, "sk-test-1")
    assert [ask(api, "m", "hi").choices[0].message.content for _ in range(3)] == ["fine thanks"] * 3
    with pytest.raises(openai.RateLimitError, match="at most 3 requests per minute") as info:
        ask(api, "m", "hi")
    assert int(info.value.response.headers["retry-after"]) > 0


def test_with_login_and_no_key_the_api_is_closed(tmp_path, models_root):
    config = make_config(tmp_path, models_root, auth=(("ann", "secret"),))
    demo, url = start_app(fake_services(config, FakeTextEngine()))
    try:
        with pytest.raises(openai.AuthenticationError, match="requires login"):
            ask(client(url), "m", "hi")
    finally:
        demo.close()
