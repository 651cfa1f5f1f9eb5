"""Chat tab: a streaming conversation with any chat model, with retry, undo, edit, export and import."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import gradio as gr

from engines.catalog import Catalog, shipped_catalog
from engines.constraints import Constraint
from engines.generation import GenerationError
from engines.params import GenerationParams
from identity import owner_of, rate_key_of, session_of
from serving.sessions import StopRegistry
from ui import conversation_io
from ui.common import (
    TEXT_QUEUE,
    ParamControls,
    bind,
    build_param_controls,
    params_or_error,
    preset_values,
    read_ahead,
)
from ui.errors import to_gr_error
from ui.output_format import FREE, build_output_format, constraint_of
from ui.protocols import CollectionSearch, HistoryRecorder, TextGenerator

logger = logging.getLogger(__name__)
Messages = list[dict[str, Any]]
ChatOutput = tuple[Messages, Messages, dict[str, Any]]  # chatbot, conversation state, stats of the last reply
KEPT = "Everything up to the failure is kept."
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly and accurately."


@dataclass
class ChatDeps:
    """Everything the Chat tab needs: `build` lays it out from these, and its handlers get them injected."""

    engine: TextGenerator
    registry: StopRegistry
    max_new_tokens: int
    catalog: Catalog = field(default_factory=shipped_catalog)  # model choices and presets
    history: HistoryRecorder | None = None  # every reply is recorded when set
    index: CollectionSearch | None = None  # lets a reply answer from a collection
    owner: gr.State | None = None  # the page's owner id (app.py), so replies are recorded under it
    slots: int = 8  # generations the UI runs at once (ui.common.text_slots)
    rag_chars: int = 2000  # context budget for retrieved passages


@dataclass
class Asker:
    """Who is asking: the stop-registry session and the history owner."""

    session: str  # the connection: Stop ends its running request
    owner: str  # whose history and collections
    rate: str = ""  # whom the rate limit counts


SOURCES_TITLE = "Sources"


@dataclass
class ChatTab:
    """Handles other tabs may need (e.g. the Datasets tab sends a cell into `message`)."""

    message: gr.Textbox
    chatbot: gr.Chatbot
    model: gr.Dropdown
    controls: ParamControls


def prompt_messages(history: Messages, system_prompt: str, question: str) -> Messages:
    """What the model sees: the system prompt, the conversation without source notes, and the (augmented) question."""
    system = [{"role": "system", "content": system_prompt.strip()}] if system_prompt.strip() else []
    turns = [{"role": m["role"], "content": m["content"]} for m in history if not m.get("metadata")]
    return [*system, *turns, {"role": "user", "content": question}]


def retrieve(message: str, collection: str, deps: ChatDeps, owner: str) -> tuple[str, Messages]:
    """The question with passages from the asker's (`owner`'s) collection, and the sources note for the reply."""
    if not collection or deps.index is None:
        return message, []
    from store import format_sources, rag_message

    try:
        context, sources = deps.index.retrieve_for_prompt(owner, collection, message, top_k=4,
                                                          max_chars=deps.rag_chars)
    except Exception as exc:
        raise to_gr_error(exc, f"Could not search the collection {collection!r}") from None
    if not sources:
        info = deps.index.info(owner, collection)
        busy = f" It is still indexing ({info.embedded}/{info.chunks} chunks embedded)." if info.indexing else ""
        gr.Warning(f"Nothing in {collection!r} matched your message; answering without it.{busy}")
        return message, []
    note = {"role": "assistant", "content": format_sources(sources), "metadata": {"title": SOURCES_TITLE}}
    return rag_message(context, message), [note]


def stream_reply(history: Messages, message: str, system_prompt: str, model: str, params: GenerationParams,
                 asker: Asker, deps: ChatDeps, collection: str = "", show_question: bool = True,
                 constraint: Constraint | None = None) -> Iterator[ChatOutput]:
    """Append `message` to `history` and stream the assistant's reply, keeping everything that arrived.

    `show_question` yields the conversation with the question before the reply starts (a person wants to see their
    message at once; an API client only waits longer for a message it sent itself).
    """
    question, notes = retrieve(message, collection, deps, asker.owner)
    prompt = prompt_messages(history, system_prompt, question)
    convo = [*history, {"role": "user", "content": message}]
    shown = [*convo, {"role": "assistant", "content": ""}]
    text, stats = "", {}
    # refuses (rate limit) before anything is shown
    with deps.registry.generation(asker.session, on_timeout=gr.Warning, rate_key=asker.rate) as stop:
        loading = not deps.engine.is_loaded(model)
        held = {"constraint": constraint} if constraint is not None else {}  # the Output format, when not free
        updates = read_ahead(deps.engine.chat(model, prompt, params, stop=stop, owner=asker.owner, **held))
        if show_question:
            yield shown, history, {}  # the question appears at once; the state changes only once a reply starts
        if loading:
            gr.Info(f"Loading {model}: the first reply waits for it.")
        try:
            for batch in updates:
                for update in batch:
                    stats = asdict(update.stats) if update.stats is not None else stats
                    text += update.delta
                if any(u.delta or u.stats is not None for u in batch):
                    shown = [*convo, {"role": "assistant", "content": text}, *notes]
                    yield shown, shown, stats
        except GenerationError as exc:
            kept = [*convo, {"role": "assistant", "content": text}, *notes] if text else convo
            yield kept, kept, stats
            raise to_gr_error(exc, "Generation failed", kept=KEPT) from None
        except Exception as exc:
            yield history, history, stats  # nothing was generated: put the conversation back as it was
            raise to_gr_error(exc, f"Could not answer with {model}") from None
    record(deps, asker, "chat", message, text, model, params, stats, collection)
    if stats.get("trimmed_messages"):
        gr.Warning(f"The conversation is longer than the model's context: the oldest {stats['trimmed_messages']} "
                   f"messages were left out of this reply's prompt (they stay in your history).")


def record(deps: Any, asker: Asker, kind: str, prompt: str, output: str, model: str, params: GenerationParams,
           stats: dict[str, Any], collection: str = "") -> None:
    """Keep the generation in the user's history; a failure to record never costs the user the reply."""
    if deps.history is None or not output:
        return
    timings = {k: stats.get(k) for k in ("ttft_s", "total_s", "tokens_per_s", "generated_tokens", "prompt_tokens")}
    extra = {"collection": collection} if collection else {}
    try:
        deps.history.record(asker.owner, kind, prompt, output, model, {**params.as_dict(), **extra},
                            stats.get("seed"), timings)
    except Exception:  # the reply is already shown; the log says why history missed it
        logger.exception("could not record a %s generation", kind)


def asker_of(request: gr.Request | None, browser_id: str) -> Asker:
    return Asker(session=session_of(request), owner=owner_of(request, browser_id), rate=rate_key_of(request))


def collection_choices(browser_id: str = "", request: gr.Request = None, *, index: CollectionSearch) -> gr.Dropdown:
    """The asker's own collections to answer from."""
    return gr.Dropdown(choices=["", *index.names(asker_of(request, browser_id).owner)])


def _params(deps: ChatDeps, values: tuple[Any, ...]) -> GenerationParams:
    return params_or_error(deps.max_new_tokens, values)


def chat(message: str, history: Messages, system_prompt: str, model: str, temperature: float, top_p: float,
         top_k: int, repetition_penalty: float, max_new_tokens: int, seed: int, collection: str = "",
         output_kind: str = FREE, output_spec: str = "", browser_id: str = "", request: gr.Request = None, *,
         deps: ChatDeps, show_question: bool = True) -> Iterator[ChatOutput]:
    """Send a message and stream the reply (answered from `collection` when one is chosen)."""
    message = (message or "").strip()
    if not message:
        raise gr.Error("The message is empty: type something to send.")
    params = _params(deps, (temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed))
    yield from stream_reply(history or [], message, system_prompt or "", model, params,
                            asker_of(request, browser_id), deps, collection or "", show_question,
                            constraint_of(output_kind, output_spec))


def last_user_index(history: Messages) -> int:
    for i in range(len(history) - 1, -1, -1):
        if history[i]["role"] == "user":
            return i
    raise gr.Error("There is no message of yours in this conversation yet.")


def retry(history: Messages, system_prompt: str, model: str, temperature: float, top_p: float, top_k: int,
          repetition_penalty: float, max_new_tokens: int, seed: int, collection: str = "",
          output_kind: str = FREE, output_spec: str = "", browser_id: str = "", request: gr.Request = None, *,
          deps: ChatDeps) -> Iterator[ChatOutput]:
    """Generate the last reply again."""
    i = last_user_index(history or [])
    params = _params(deps, (temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed))
    yield from stream_reply(history[:i], history[i]["content"], system_prompt or "", model, params,
                            asker_of(request, browser_id), deps, collection or "",
                            constraint=constraint_of(output_kind, output_spec))


def undo(history: Messages) -> tuple[Messages, Messages, str]:
    """Remove the last exchange and put its message back in the input box."""
    i = last_user_index(history or [])
    return history[:i], history[:i], history[i]["content"]


def _edited_text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("text", value.get("content", ""))
    if isinstance(value, list):
        value = " ".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in value)
    return str(value or "").strip()


def edit(history: Messages, system_prompt: str, model: str, temperature: float, top_p: float, top_k: int,
         repetition_penalty: float, max_new_tokens: int, seed: int, collection: str = "",
         output_kind: str = FREE, output_spec: str = "", browser_id: str = "", data: gr.EditData = None,
         request: gr.Request = None, *, deps: ChatDeps) -> Iterator[ChatOutput]:
    """Replace one of the user's messages and answer again from there."""
    i = data.index if isinstance(data.index, int) else data.index[0]
    if not 0 <= i < len(history or []) or history[i]["role"] != "user":
        raise gr.Error("Only your own messages can be edited.")
    text = _edited_text(data.value)
    if not text:
        raise gr.Error("The edited message is empty: type something.")
    params = _params(deps, (temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed))
    yield from stream_reply(history[:i], text, system_prompt or "", model, params, asker_of(request, browser_id),
                            deps, collection or "", constraint=constraint_of(output_kind, output_spec))


def stop(request: gr.Request = None, *, registry: StopRegistry) -> str:
    """Stop this session's running generation."""
    return "stopped" if registry.stop(session_of(request)) else "nothing to stop"


def render_info(stats: dict[str, Any]) -> str:
    """One line under the chat: tokens, speed, seed."""
    if not stats:
        return ""
    return (f"{stats['generated_tokens']} tokens · {stats['tokens_per_s']} tokens/s · first token "
            f"{stats['ttft_s'] * 1000:.0f} ms · seed {stats['seed']} · {stats['finish_reason']}")


def restore_draft(draft: str, history: Messages) -> str:
    """After a failed send, give the typed message back unless it made it into the conversation."""
    kept = any(m["role"] == "user" and m["content"] == draft.strip() for m in (history or [])[-2:])
    return "" if kept else draft


def _layout(catalog: Catalog, max_new_tokens: int, collections: bool) -> tuple[dict[str, Any], ParamControls]:
    ui: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=3):
            ui["chatbot"] = gr.Chatbot(label="Conversation", height=480, editable="user",
                                       buttons=["copy", "copy_all"], placeholder="Ask anything to start.")
            with gr.Row():
                ui["message"] = gr.Textbox(placeholder="Type a message and press Enter", show_label=False,
                                           scale=6, lines=1, max_lines=8, elem_id="chat-message")
                ui["send"] = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
                ui["stop"] = gr.Button("Stop", variant="stop", scale=1)
            ui["info"] = gr.Markdown(elem_id="chat-info")
            with gr.Row():
                ui["new"] = gr.Button("New chat", size="sm")
                ui["export"] = gr.Button("Export JSON", size="sm")
                ui["import"] = gr.UploadButton("Import JSON", file_types=[".json"], size="sm")
            ui["file"] = gr.File(label="Exported conversation", visible=False)
        with gr.Column(scale=1):
            ui["model"] = gr.Dropdown(catalog.choices("chat"), value=catalog.default("chat"), label="Model",
                                      allow_custom_value=True, info="hub id or a local folder")
            ui["system"] = gr.Textbox(DEFAULT_SYSTEM_PROMPT, label="System prompt", lines=3)
            ui["collection"] = gr.Dropdown([""], value="", label="Answer from collection", allow_custom_value=True,
                                           info="passages from an Index collection go into the prompt",
                                           visible=collections)
            ui["preset"] = gr.Dropdown(list(catalog.presets), value=None, label="Preset")
            controls = build_param_controls(max_new_tokens)
            ui["format"] = build_output_format()
    ui["history"], ui["stats"], ui["draft"] = gr.State([]), gr.State({}), gr.State("")
    ui["api_chat"] = gr.Button(visible=False)  # carries the /chat endpoint
    ui["stop_status"] = gr.Textbox(visible=False)  # what /stop answers: "stopped" or "nothing to stop"
    return ui, controls


def build(deps: ChatDeps) -> ChatTab:
    """Lay out the Chat tab, then wire its events (history recording and collections when given)."""
    catalog = deps.catalog
    ui, controls = _layout(catalog, deps.max_new_tokens, collections=deps.index is not None)
    owner = deps.owner if deps.owner is not None else gr.State("")
    settings = [ui["system"], ui["model"], *controls.components(), ui["collection"], *ui["format"].components(),
                owner]
    if deps.index is not None:
        ui["collection"].focus(bind(collection_choices, index=deps.index), owner, ui["collection"],
                               api_visibility="private")
    outputs = [ui["chatbot"], ui["history"], ui["stats"]]
    _wire_generation(ui, settings, outputs, deps, slots=deps.slots)
    from ui.chat_tools import build_tools  # it builds on this module's handlers

    build_tools(ui, [ui["system"], ui["model"], *controls.components()], owner, deps)
    ui["stop"].click(bind(stop, registry=deps.registry), None, ui["stop_status"], api_name="stop",
                     concurrency_limit=None)
    ui["new"].click(lambda: ([], [], {}, ""), None, [*outputs, ui["info"]], api_name="clear")
    ui["chatbot"].clear(lambda: ([], {}, ""), None, [ui["history"], ui["stats"], ui["info"]],
                        api_visibility="private")  # the chatbot's own trash icon
    ui["export"].click(conversation_io.export_file, [ui["history"], ui["system"], ui["model"]], ui["file"],
                       api_name="export_chat")
    ui["import"].upload(conversation_io.import_file, [ui["import"], ui["history"], ui["system"]],
                        [ui["chatbot"], ui["history"], ui["system"]], api_name="import_chat")
    ui["preset"].change(partial(preset_values, catalog.presets), ui["preset"], controls.components(),
                        api_visibility="private")
    return ChatTab(message=ui["message"], chatbot=ui["chatbot"], model=ui["model"], controls=controls)


def _wire_generation(ui: dict[str, Any], settings: list, outputs: list, deps: ChatDeps, slots: int) -> None:
    """Send, retry and edit, for the UI and API clients; every one waits in the text queue (`slots` run at once)."""
    def after(event: Any) -> None:
        event.then(render_info, ui["stats"], ui["info"], api_visibility="private")

    # The box is cleared first and the message travels on in `draft`; reading the box after clearing it would race.
    typed = gr.on([ui["message"].submit, ui["send"].click], lambda m: ("", m), ui["message"],
                  [ui["message"], ui["draft"]], queue=False, api_visibility="private")
    # preprocess=False: raw values reach the handler, which validates them itself and names the bad parameter
    sent = typed.then(bind(chat, deps=deps), [ui["draft"], ui["history"], *settings], outputs,
                      api_name="chat_from_box", api_visibility="private", concurrency_limit=slots,
                      concurrency_id=TEXT_QUEUE, preprocess=False)
    after(sent)
    sent.failure(restore_draft, [ui["draft"], ui["history"]], ui["message"], api_visibility="private")
    # the same handler for API clients, who pass the message itself
    after(ui["api_chat"].click(bind(chat, deps=deps, show_question=False), [ui["message"], ui["history"], *settings],
                               outputs, api_name="chat", concurrency_id=TEXT_QUEUE, concurrency_limit=slots,
                               preprocess=False))
    after(ui["chatbot"].retry(bind(retry, deps=deps), [ui["history"], *settings], outputs, api_name="retry",
                              concurrency_id=TEXT_QUEUE, concurrency_limit=slots, preprocess=False))
    ui["chatbot"].undo(undo, ui["history"], [ui["chatbot"], ui["history"], ui["message"]], api_name="undo")
    after(ui["chatbot"].edit(bind(edit, deps=deps), [ui["history"], *settings], outputs,
                             api_visibility="private", concurrency_id=TEXT_QUEUE, concurrency_limit=slots,
                             preprocess=False))

