"""Chat and text handlers called as plain functions with a fake engine."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import gradio as gr
import pytest
from fakes import FakeTextEngine

from serving.sessions import StopRegistry
from ui import chat_tab, conversation_io, text_tab
from ui.chat_tab import ChatDeps
from ui.common import bind
from ui.text_tab import TextDeps

VALUES = (0.2, 0.9, 50, 1.1, 64, -1)  # temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed
MODEL = "fake/model"


def deps(engine=None) -> ChatDeps:
    return ChatDeps(engine=engine or FakeTextEngine(), registry=StopRegistry(), max_new_tokens=512)


def last(stream):
    out = None
    for out in stream:
        pass
    return out


def test_updates_that_arrive_together_are_handed_over_together_and_errors_follow_them():
    from ui.common import read_ahead

    produced, go_on = threading.Event(), threading.Event()

    def producer():
        yield 1
        yield 2
        yield 3
        produced.set()  # 1-3 are queued by now: the reader took each before asking for the next
        go_on.wait(5)
        yield 4
        raise RuntimeError("model failed")

    batches = read_ahead(producer())  # starts reading at once, before anyone asks
    assert produced.wait(5)
    assert next(batches) == [1, 2, 3]
    go_on.set()
    assert next(batches) == [4]
    with pytest.raises(RuntimeError, match="model failed"):
        next(batches)


def test_chat_streams_and_records_the_exchange():
    d = deps(FakeTextEngine(delay=0.02))  # tokens arriving apart are shown apart
    steps = list(chat_tab.chat("Hi", [], "be nice", MODEL, *VALUES, deps=d))
    assert len(steps) > 3
    shown, history, stats = steps[-1]
    assert history == [{"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": "Hello there from the fake model"}]
    assert stats["generated_tokens"] == 6
    sent = d.engine.calls[0]["messages"]
    assert sent[0] == {"role": "system", "content": "be nice"} and sent[-1]["content"] == "Hi"
    assert chat_tab.render_info(stats).startswith("6 tokens")


@pytest.mark.parametrize("message, values, words", [
    ("   ", VALUES, "message is empty"),
    ("hi", ("hot", *VALUES[1:]), "temperature must be a number"),
    ("hi", (*VALUES[:4], 0, -1), "max_new_tokens must be between 1 and 512"),
])
def test_chat_refuses_bad_input(message, values, words):
    with pytest.raises(gr.Error, match=words):
        last(chat_tab.chat(message, [{"role": "user", "content": "kept"}], "", MODEL, *values, deps=deps()))


def test_unknown_model_restores_the_conversation():
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    stream = chat_tab.chat("next", history, "", "missing/model", *VALUES, deps=deps())
    first = next(stream)
    assert first[0][-2]["content"] == "next"  # the question shows at once
    with pytest.raises(gr.Error, match="cannot find model"):
        restored = next(stream)
        next(stream)
    assert restored[0] == history and restored[1] == history  # the conversation is put back as it was
    assert chat_tab.restore_draft("next", history) == "next"


def test_failure_mid_reply_keeps_the_partial_answer():
    d = deps(FakeTextEngine(fail_after=3))
    outputs = []
    with pytest.raises(gr.Error, match="Everything up to the failure is kept"):
        for out in chat_tab.chat("Hi", [], "", MODEL, *VALUES, deps=d):
            outputs.append(out)
    _, history, _ = outputs[-1]
    assert history == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there from"}]


def test_stop_ends_only_this_session():
    d = deps(FakeTextEngine(reply="w " * 50, delay=0.02))
    mine, other = SimpleNamespace(session_hash="A", username=None), SimpleNamespace(session_hash="B", username=None)
    stream = chat_tab.chat("Hi", [], "", MODEL, *VALUES, request=mine, deps=d)
    next(stream), next(stream)
    assert chat_tab.stop(other, registry=d.registry) == "nothing to stop"
    assert chat_tab.stop(mine, registry=d.registry) == "stopped"
    _, history, stats = last(stream)
    assert stats["finish_reason"] == "stop" and len(history) == 2
    assert d.engine.finished == ["stop"]


def test_retry_undo_edit():
    d = deps()
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
               {"role": "user", "content": "q2"}, {"role": "assistant", "content": "old answer"}]
    _, retried, _ = last(chat_tab.retry(history, "", MODEL, *VALUES, deps=d))
    assert retried[:3] == history[:3] and retried[3]["content"] == "Hello there from the fake model"
    shown, state, text = chat_tab.undo(history)
    assert state == history[:2] and text == "q2"
    data = SimpleNamespace(index=0, value=[{"type": "text", "text": "q1 edited"}])
    _, edited, _ = last(chat_tab.edit(history, "", MODEL, *VALUES, data=data, deps=d))
    assert [m["content"] for m in edited] == ["q1 edited", "Hello there from the fake model"]
    with pytest.raises(gr.Error, match="Only your own messages"):
        last(chat_tab.edit(history, "", MODEL, *VALUES, data=SimpleNamespace(index=1, value="x"), deps=d))
    with pytest.raises(gr.Error, match="no message of yours"):
        chat_tab.undo([])


def test_trimming_is_announced(recwarn):
    d = deps(FakeTextEngine(trimmed_messages=4))
    last(chat_tab.chat("Hi", [], "", MODEL, *VALUES, deps=d))
    assert any("oldest 4 messages were left out" in str(w.message) for w in recwarn.list)


def test_export_import_round_trip(tmp_path):
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a ✓"}]
    exported = conversation_io.export_file(history, "sys", MODEL)
    data = json.loads(open(exported.value if isinstance(exported.value, str) else exported.value["path"]).read())
    assert data["format"] == "hf-playground-chat" and data["messages"] == history and data["model"] == MODEL
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    shown, state, system = conversation_io.import_file(str(path), [], "old")
    assert state == history and system == "sys"
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([{"role": "system", "content": "S"}, *history]))
    assert conversation_io.import_file(str(bare), [], "old")[1:] == (history, "S")


@pytest.mark.parametrize("content, words", [
    ("{broken", "is not a JSON file"),
    (json.dumps({"messages": [{"role": "robot", "content": "x"}]}), "message 0 must be an object"),
    (json.dumps({"nothing": 1}), "expected a JSON list of messages"),
])
def test_bad_imports_change_nothing(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(gr.Error, match=words):
        conversation_io.import_file(str(path), [{"role": "user", "content": "mine"}], "sys")
    with pytest.raises(gr.Error, match="Nothing to export"):
        conversation_io.export_file([], "", MODEL)


def test_generate_streams_with_stop_strings_and_details():
    engine = FakeTextEngine(delay=0.02)
    d = TextDeps(engine=engine, registry=StopRegistry(), max_new_tokens=512)
    steps = list(text_tab.generate("Once", "\\n\\nEND\nTHE END", MODEL, True, *VALUES, deps=d))
    text, stats, tokens = steps[-1]
    assert text == "Hello there from the fake model" and len(steps) > 3
    assert engine.calls[0]["stops"] == ("\n\nEND", "THE END")
    line, highlighted = text_tab.render_details(stats, tokens)
    assert "**6** generated" in line and highlighted[0] == ("Hello", "50–90%")
    with pytest.raises(gr.Error, match="prompt is empty"):
        last(text_tab.generate(" ", "", MODEL, False, *VALUES, deps=d))
    with pytest.raises(gr.Error, match="At most 8 stop strings"):
        last(text_tab.generate("x", "\n".join("abcdefghij"), MODEL, False, *VALUES, deps=d))
    with pytest.raises(gr.Error, match="top_k must be between"):
        last(text_tab.generate("x", "", MODEL, False, 0.2, 0.9, 5000, 1.1, 64, -1, deps=d))


def test_probability_buckets():
    assert [text_tab.bucket(p) for p in (0.95, 0.6, 0.2, 0.01, None)] == ["≥ 90%", "50–90%", "10–50%", "< 10%", None]


def test_over_the_rate_limit_nothing_starts_and_the_conversation_stays():
    from serving.limits import RateLimiter

    clock = [0.0]
    d = ChatDeps(engine=FakeTextEngine(), registry=StopRegistry(RateLimiter(2, clock=lambda: clock[0])),
                 max_new_tokens=512)
    me = SimpleNamespace(session_hash="A", username=None)
    history = last(chat_tab.chat("one", [], "", MODEL, *VALUES, request=me, deps=d))[1]
    history = last(chat_tab.chat("two", history, "", MODEL, *VALUES, request=me, deps=d))[1]
    with pytest.raises(gr.Error, match="at most 2 requests per minute; try again in 60 s"):
        next(bind(chat_tab.chat, deps=d)("three", history, "", MODEL, *VALUES, request=me))
    assert len(d.engine.calls) == 2 and len(history) == 4
    other = SimpleNamespace(session_hash="B", username=None)  # someone else is not limited by my requests
    assert last(chat_tab.chat("hi", [], "", MODEL, *VALUES, request=other, deps=d))[1][-1]["content"]
    clock[0] = 61.0  # a minute later
    assert last(chat_tab.chat("three", history, "", MODEL, *VALUES, request=me, deps=d))[1][-2]["content"] == "three"


def test_a_generation_past_the_time_limit_is_stopped_with_a_warning(monkeypatch):
    warnings = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: warnings.append(message))
    d = ChatDeps(engine=FakeTextEngine(reply="w " * 200, delay=0.02), registry=StopRegistry(timeout_s=0.3),
                 max_new_tokens=512)
    _, history, stats = last(chat_tab.chat("go", [], "", MODEL, *VALUES, deps=d))
    assert stats["finish_reason"] == "stop" and 0 < stats["generated_tokens"] < 100
    assert history[-1]["content"]  # what arrived before the limit is kept
    assert any("time limit of 0.3 s" in w for w in warnings)


def test_the_engine_hears_who_asks_so_cached_prompts_stay_theirs():
    from identity import owner_of

    engine = FakeTextEngine()
    ann, bob = SimpleNamespace(username="ann", session_hash="s1"), SimpleNamespace(username="bob", session_hash="s2")
    list(chat_tab.chat("hi", [], "", MODEL, *VALUES, request=ann, deps=deps(engine)))
    list(text_tab.generate("Once", "", MODEL, False, *VALUES, request=bob,
                           deps=TextDeps(engine=engine, registry=StopRegistry(), max_new_tokens=512)))
    assert [c["owner"] for c in engine.calls] == [owner_of(ann, ""), owner_of(bob, "")] == ["user:ann", "user:bob"]
