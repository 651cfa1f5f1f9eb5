"""The launched app driven with gradio_client, around a fake engine (wiring, streaming, stop, sessions)."""

from __future__ import annotations

import time

import pytest
from fakes import FakeTextEngine
from gradio_client import Client
from gradio_client.exceptions import AppError
from helpers import fake_services, message_text, start_app


@pytest.fixture(scope="module")
def running(tmp_path_factory, models_root):
    from helpers import make_config

    engine = FakeTextEngine(reply=" ".join(f"w{i}" for i in range(40)), delay=0.03)
    services = fake_services(make_config(tmp_path_factory.mktemp("app"), models_root), engine)
    demo, url = start_app(services)
    yield engine, url
    demo.close()


def client(url: str) -> Client:
    return Client(url, verbose=False)


def test_endpoints_are_named(running):
    _, url = running
    names = set(client(url).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/chat", "/stop", "/retry", "/undo", "/clear", "/export_chat", "/import_chat", "/generate",
            "/generation_details", "/load_model", "/unload_model", "/models_list"} <= names
    assert not [n for n in names if n.startswith(("/lambda", "/partial"))], names


def test_chat_chunks_arrive_one_by_one(running):
    _, url = running
    job = client(url).submit("hello", api_name="/chat")
    arrivals, lengths = [], []
    for chunk in job:
        arrivals.append(time.perf_counter())
        lengths.append(len(message_text(chunk[-1])))
    assert len(arrivals) >= 20, "each token should arrive as its own chunk"
    assert arrivals[-1] - arrivals[0] > 0.5, "chunks must stream, not arrive all at the end"
    assert lengths == sorted(lengths)
    assert message_text(job.result()[-1]).endswith("w39")


def test_stop_ends_the_generation(running):
    engine, url = running
    c = client(url)
    engine.reply = " ".join(f"x{i}" for i in range(400))  # 12 s if not stopped
    try:
        job = c.submit("long please", api_name="/chat")
        for i, _ in enumerate(job):
            if i == 3:
                break
        start = time.perf_counter()
        assert c.predict(api_name="/stop") == "stopped"
        result = job.result(timeout=10)
        assert time.perf_counter() - start < 5
    finally:
        engine.reply = " ".join(f"w{i}" for i in range(40))
    assert engine.finished[-1] == "stop" and engine.active == 0
    assert len(message_text(result[-1]).split()) < 100


def test_two_clients_keep_separate_histories(running):
    _, url = running
    first, second = client(url), client(url)
    first.predict("alpha", api_name="/chat")
    second.predict("beta", api_name="/chat")
    history = first.predict("gamma", api_name="/chat")
    users = [message_text(m) for m in history if m["role"] == "user"]
    assert users == ["alpha", "gamma"]
    assert [message_text(m) for m in second.predict(api_name="/undo")[0]] == []


@pytest.mark.parametrize("kwargs, words", [
    ({"message": ""}, "message is empty"),
    ({"message": "hi", "temperature": 7}, "temperature must be between 0 and 2, got 7"),
    ({"message": "hi", "temperature": "abc"}, "temperature must be a number, got 'abc'"),
    ({"message": "hi", "seed": 1.5}, "seed must be a whole number"),
    ({"message": "hi", "max_new_tokens": 0}, "max_new_tokens must be between 1 and 512"),
])
def test_bad_input_gets_a_clear_message(running, kwargs, words):
    _, url = running
    with pytest.raises(AppError, match=words):
        client(url).predict(**kwargs, api_name="/chat")


def test_generate_and_details(running):
    _, url = running
    c = client(url)
    text = c.predict("Once upon", "", api_name="/generate")
    assert text.startswith("w0 w1")
    details, tokens = c.predict(api_name="/generation_details")
    assert "**40** generated" in details


def test_failed_load_keeps_the_app_working(running):
    _, url = running
    c = client(url)
    with pytest.raises(AppError, match="cannot find model"):
        c.predict("chat", "missing/model", api_name="/load_model")
    assert message_text(c.predict("still there?", api_name="/chat")[-1]).startswith("w0")


def test_conversation_endpoints_from_the_readme(running, tmp_path):
    from gradio_client import handle_file

    _, url = running
    c = client(url)
    c.predict("first", api_name="/chat")
    c.predict("second", api_name="/chat")
    retried = c.predict(api_name="/retry")
    assert [message_text(m) for m in retried if m["role"] == "user"] == ["first", "second"]
    shown, restored = c.predict(api_name="/undo")
    assert restored == "second" and len(shown) == 2
    exported = c.predict(api_name="/export_chat")
    path = exported if isinstance(exported, str) else exported["value"]
    assert '"first"' in open(path, encoding="utf-8").read()
    c.predict(api_name="/clear")
    assert c.predict("again", api_name="/chat")[0]["role"] == "user" and len(c.predict(api_name="/retry")) == 2
    shown, _ = c.predict(handle_file(path), api_name="/import_chat")
    assert [message_text(m) for m in shown] == ["first", "w0 " + " ".join(f"w{i}" for i in range(1, 40))]


def test_models_endpoints(running):
    _, url = running
    c = client(url)
    status = c.predict("chat", "fake/loaded", api_name="/load_model")
    assert "Loaded" in status
    rows, summary, _ = c.predict(api_name="/models_list")
    assert "loaded (limit" in summary
    with pytest.raises(AppError, match="is not loaded"):
        c.predict("not/there", api_name="/unload_model")


def test_auth_requires_login(tmp_path, models_root):
    from helpers import make_config

    services = fake_services(make_config(tmp_path, models_root, auth=(("ann", "secret"),)), FakeTextEngine())
    demo, url = start_app(services)
    try:
        with pytest.raises(Exception):
            Client(url, verbose=False).predict("hi", api_name="/chat")
        with pytest.raises(Exception):
            Client(url, auth=("ann", "wrong"), verbose=False)
        history = Client(url, auth=("ann", "secret"), verbose=False).predict("hi", api_name="/chat")
        assert message_text(history[-1]).startswith("Hello")
    finally:
        demo.close()


def test_stop_from_another_session_does_not_stop_mine(running):
    engine, url = running
    mine, other = client(url), client(url)
    engine.reply = " ".join(f"y{i}" for i in range(30))
    try:
        job = mine.submit("keep going", api_name="/chat")
        for i, _ in enumerate(job):
            if i == 3:
                break
        assert other.predict(api_name="/stop") == "nothing to stop"  # another browser session pressing Stop
        result = job.result(timeout=20)
    finally:
        engine.reply = " ".join(f"w{i}" for i in range(40))
    assert message_text(result[-1]).endswith("y29"), "someone else's Stop must not end my reply"
