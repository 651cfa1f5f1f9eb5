"""The Output format control of the Chat and Text generation tabs: handlers on the real torch engine with the tiny
random Llama (whose free text is never JSON), refusals as messages, and the /chat endpoint through gradio_client."""

from __future__ import annotations

import json
import re

import gradio as gr
import jsonschema
import pytest
from gradio_client import Client
from helpers import fake_services, make_config, message_text, start_app

from serving.sessions import StopRegistry
from ui import chat_tab, output_format, text_tab
from ui.chat_tab import ChatDeps
from ui.text_tab import TextDeps

SAMPLED = (1.0, 1.0, 0, 1.0, 80, 3)  # temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed
SCHEMA = {"type": "object", "properties": {"word": {"type": "string", "maxLength": 10}, "n": {"type": "integer"}},
          "required": ["word", "n"], "additionalProperties": False}


@pytest.fixture(scope="module")
def engine(models_root, sharp_llama):
    from helpers import cpu_text_engine

    text = cpu_text_engine((models_root,), models_root / "ui-cache", max_batch=4)
    yield text, str(sharp_llama)
    text.cache.close()


def last(stream):
    out = None
    for out in stream:
        pass
    return out


def test_a_chat_reply_follows_the_chosen_json_schema(engine):
    text, model = engine
    deps = ChatDeps(engine=text, registry=StopRegistry(), max_new_tokens=256)
    shown, _, stats = last(chat_tab.chat("hello", [], "", model, *SAMPLED, "", output_format.SCHEMA,
                                         json.dumps(SCHEMA), deps=deps))
    jsonschema.validate(json.loads(shown[-1]["content"]), SCHEMA)
    retried = last(chat_tab.retry(shown, "", model, *SAMPLED[:-1], 4, "", output_format.CHOICE, "up\ndown",
                                  deps=deps))
    assert retried[0][-1]["content"] in ("up", "down")
    free = last(chat_tab.chat("hello", [], "", model, *SAMPLED, deps=deps))[0][-1]["content"]
    assert not free.startswith("{")  # the same request unconstrained: the random model writes no JSON


def test_a_completion_follows_a_regex_and_a_grammar(engine):
    text, model = engine
    deps = TextDeps(engine=text, registry=StopRegistry(), max_new_tokens=256)
    out, _, _ = last(text_tab.generate("the answer is", "", model, False, *SAMPLED, output_format.REGEX,
                                       r"[a-z]{3}\d", deps=deps))
    assert re.fullmatch(r"[a-z]{3}\d", out)
    out, _, _ = last(text_tab.generate("the answer is", "", model, False, *SAMPLED, output_format.GRAMMAR,
                                       output_format.EXAMPLES[output_format.GRAMMAR], deps=deps))
    assert re.fullmatch(r"(yes|no) because [a-z ]+", out)


@pytest.mark.parametrize("kind, spec, words", [
    (output_format.SCHEMA, '{"type": "objekt"}', "not a valid JSON schema at $.type"),
    (output_format.SCHEMA, "{", "not JSON"),
    (output_format.REGEX, "[a-", "the regex does not compile"),
    (output_format.CHOICE, "\n \n", "the choice list must be a non-empty list"),
    (output_format.GRAMMAR, "root ::= x", 'Rule "x" is not defined'),
])
def test_an_output_format_that_cannot_be_enforced_is_refused_before_anything_runs(kind, spec, words):
    with pytest.raises(gr.Error) as info:
        output_format.constraint_of(kind, spec)
    assert words in str(info.value.message) and str(info.value.message).startswith("Output format:")


def test_every_kind_has_an_example_that_compiles():
    for kind in output_format.KINDS:
        output_format.constraint_of(kind, output_format.EXAMPLES[kind])


def test_the_chat_endpoint_takes_an_output_format(tmp_path, models_root, engine):
    text, model = engine
    services = fake_services(make_config(tmp_path, models_root), text)
    demo, url = start_app(services)
    try:
        client = Client(url, verbose=False)
        shown = client.predict(message="hello", model=model, output_kind=output_format.CHOICE,
                               output_spec="alpha\nbeta", temperature=1.0, api_name="/chat")
        assert message_text(shown[-1]) in ("alpha", "beta")
    finally:
        demo.close()


def test_the_tools_panel_shows_the_call_takes_the_result_and_the_chat_goes_on(engine):
    from ui import chat_tools

    text, model = engine
    deps = ChatDeps(engine=text, registry=StopRegistry(), max_new_tokens=256)
    shown, history, _ = last(chat_tools.ask_with_tools("weather in paris?", [], "", model, *SAMPLED,
                                                        deps=deps))
    call = json.loads(shown[-1]["content"])
    assert call["name"] == "get_weather" and isinstance(call["arguments"]["city"], str)
    shown, history, stats = last(chat_tools.send_result('{"celsius": 21}', history, "", model, *SAMPLED,
                                                         deps=deps))
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[2]["content"] == 'Function result: {"celsius": 21}' and stats["generated_tokens"] > 0
    with pytest.raises(gr.Error, match="Tools: .*not a valid JSON schema"):
        last(chat_tools.ask_with_tools("hi", [], "", model, *SAMPLED, json.dumps(
            [{"name": "f", "parameters": {"type": "objekt"}}]), deps=deps))
