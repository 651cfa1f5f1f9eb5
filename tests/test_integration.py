"""The tabs working together in the launched app: history recording, answers from a collection, run again."""

from __future__ import annotations

import time

import gradio as gr
import pytest
from fakes import FakeTextEngine
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import fake_services, make_config, message_text, start_app

from serving.sessions import StopRegistry
from ui.rerun import rerun_router


@pytest.fixture(scope="module")
def app_parts(tmp_path_factory, models_root):
    engine = FakeTextEngine(reply="Kettles boil water in about three minutes")
    services = fake_services(make_config(tmp_path_factory.mktemp("integration"), models_root), engine)
    demo, url = start_app(services)
    yield engine, services, url
    demo.close()
    services.history.close()
    services.index.close()


def test_chat_and_completion_are_recorded_for_their_owner_only(app_parts):
    _, services, url = app_parts
    mine, other = Client(url, verbose=False), Client(url, verbose=False)
    mine.predict("What is a kettle for?", api_name="/chat")
    mine.predict("Once upon a kettle", "", api_name="/generate")
    other.predict("unrelated question", api_name="/chat")
    rows = mine.predict("all", "", "", "", api_name="/history_list")
    data = rows["data"] if isinstance(rows, dict) else rows
    text = str(data)
    assert "What is a kettle for?" in text and "Once upon a kettle" in text
    assert "unrelated question" not in text, "one user's history must not show another's"


def test_chat_answers_from_a_collection_and_shows_sources(app_parts, tmp_path):
    engine, services, url = app_parts
    doc = tmp_path / "kettle-manual.md"
    doc.write_text("# Kettle manual\n\nThe blue kettle boils one litre of water in three minutes. "
                   "Descale the kettle monthly with vinegar.\n")
    c = Client(url, verbose=False)
    c.predict("manuals", 100, 20, api_name="/index_create")
    c.predict("manuals", [handle_file(str(doc))], api_name="/index_add_documents")
    deadline = time.time() + 30
    while services.index.info(f"session:{c.session_hash}", "manuals").indexing and time.time() < deadline:
        time.sleep(0.2)
    history = c.predict("How long does the blue kettle take to boil?", collection="manuals", api_name="/chat")
    prompt = engine.calls[-1]["messages"][-1]["content"]
    assert "boils one litre of water in three minutes" in prompt, "the retrieved passage must reach the prompt"
    assert "kettle-manual.md" in message_text(history[-1]) and history[-1]["metadata"]["title"] == "Sources"
    with pytest.raises(AppError, match="no collection named 'manuals'"):  # another client's collection
        Client(url, verbose=False).predict("How long does the blue kettle take?", collection="manuals",
                                           api_name="/chat")
    follow_up = c.predict("Thanks!", api_name="/chat")
    sent = engine.calls[-1]["messages"]
    assert not any("· chunk 0 · manuals" in m["content"] for m in sent), "source notes stay out of later prompts"
    assert message_text(follow_up[-1]).startswith("Kettles")


def test_run_again_routes_to_the_right_tab():
    from ui import chat_tab, text_tab
    from ui.chat_tab import ChatDeps
    from ui.text_tab import TextDeps

    with gr.Blocks(), gr.Tabs() as tabs:
        with gr.Tab("Chat", id="chat"):
            chat = chat_tab.build(ChatDeps(engine=FakeTextEngine(), registry=StopRegistry(), max_new_tokens=64))
        with gr.Tab("Text generation", id="text"):
            text = text_tab.build(TextDeps(engine=FakeTextEngine(), registry=StopRegistry(), max_new_tokens=64))
    route, outputs = rerun_router(tabs, chat, text)
    updates = route("chat", "hello", "m/x", {"temperature": 0.5, "seed": 7})
    assert updates[tabs].selected == "chat"
    assert updates[chat.message] == "hello" and updates[chat.model] == "m/x"
    assert updates[chat.controls.temperature] == 0.5 and updates[chat.controls.seed] == 7
    assert chat.controls.top_p not in updates and text.prompt not in updates  # the rest is left as it is
    completion = route("completion", "Once", "m/y", {})
    assert completion[tabs].selected == "text" and completion[text.prompt] == "Once" and completion[text.model] == "m/y"
    assert chat.message not in completion
    assert route("", "", "", None) == {}
    assert set(updates) | set(completion) <= set(outputs)
