"""Compare tab, side by side: one prompt to 2-4 columns, each its own model and settings, streamed together."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from compare.columns import MAX_COLUMNS, ColumnRequest, ColumnState, stream_columns
from errors import UserError
from identity import session_of
from ui.chat_tab import Asker, asker_of, record
from ui.common import TEXT_QUEUE, bind
from ui.compare_common import CompareDeps, column_params, model_dropdown, stats_line

Conversation = list[dict[str, str]]
MODES = ("chat", "completion")
DEFAULT_TEMPERATURES = (0.0, 0.8, 0.4, 1.2)


def compare_stream(prompt: str, columns: list[dict[str, Any]], mode: str, system: str,
                   conversations: list[Conversation] | None, asker: Asker, deps: CompareDeps
                   ) -> Iterator[tuple[list[ColumnState], list[Conversation]]]:
    """Stream every column's reply; yields (column states, each column's conversation including the reply).

    In chat mode a column's earlier turns (`conversations[i]`) come before the prompt, so follow-ups continue each
    column's own conversation; in completion mode each send is a fresh continuation of `prompt`.
    """
    prompt = (prompt or "").strip()
    if not prompt:
        raise UserError("the prompt is empty: type something to send to every column")
    if not 2 <= len(columns) <= MAX_COLUMNS:
        raise UserError(f"side by side takes 2 to {MAX_COLUMNS} columns, got {len(columns)}")
    if mode not in MODES:
        raise UserError(f"mode must be one of {MODES}, got {mode!r}")
    convos = [list(c) for c in (conversations or [])] + [[] for _ in range(len(columns))]
    convos = convos[:len(columns)] if mode == "chat" else [[] for _ in columns]
    requests = [_request(deps, col, i, mode, system, convos[i], prompt) for i, col in enumerate(columns)]
    states: list[ColumnState] = []
    with deps.registry.generation(asker.session, on_timeout=gr.Warning, rate_key=asker.rate) as stop:
        for states in stream_columns(deps.engine, requests, stop, asker.owner):
            yield states, _conversations(convos, prompt, states)
    kind = "chat" if mode == "chat" else "completion"
    for req, state in zip(requests, states, strict=True):
        if not state.error:
            record(deps, asker, kind, prompt, state.text, req.model, req.params, state.stats)


def _request(deps: CompareDeps, column: dict[str, Any], index: int, mode: str, system: str,
             convo: Conversation, prompt: str) -> ColumnRequest:
    model = str(column.get("model") or "").strip()
    if not model:
        raise UserError(f"column {index + 1} has no model: pick one")
    params = column_params(deps, {k: v for k, v in column.items() if k != "model"})
    if mode == "completion":
        return ColumnRequest(model, params, prompt=prompt)
    lead = [{"role": "system", "content": system.strip()}] if (system or "").strip() else []
    return ColumnRequest(model, params, messages=(*lead, *convo, {"role": "user", "content": prompt}))


def _conversations(convos: list[Conversation], prompt: str, states: list[ColumnState]) -> list[Conversation]:
    """Each column's conversation with this exchange; a column that failed before any text keeps its own as it was."""
    return [c if s.error and not s.text else
            [*c, {"role": "user", "content": prompt}, {"role": "assistant", "content": s.text}]
            for c, s in zip(convos, states, strict=True)]


def compare_api(prompt: str, columns: list[dict] | None = None, mode: str = "chat", system: str = "",
                conversations: list[list[dict]] | None = None, request: gr.Request = None, *,
                deps: CompareDeps) -> Iterator[dict]:
    """Stream 2-4 columns; each column is {"model", "temperature", "max_new_tokens", "seed", ...}.

    Without `columns`, the default chat model answers twice: greedy and at temperature 0.8. Pass the returned
    `conversations` back to continue every column's conversation.
    """
    columns = columns or [{"model": deps.default_model, "temperature": t} for t in DEFAULT_TEMPERATURES[:2]]
    for states, convos in compare_stream(prompt, columns, mode, system, conversations, asker_of(request, ""), deps):
        yield {"columns": [{"model": c.get("model"), "text": s.text, "stats": s.stats, "error": s.error}
                           for c, s in zip(columns, states, strict=True)], "conversations": convos}


@dataclass
class SideUI:
    prompt: gr.Textbox
    mode: gr.Radio
    system: gr.Textbox
    count: gr.Slider
    models: list[gr.Dropdown]
    temperatures: list[gr.Slider]
    max_tokens: list[gr.Slider]
    seeds: list[gr.Number]
    chats: list[gr.Chatbot]
    stats: list[gr.Markdown]
    boxes: list[gr.Column]
    convos: gr.State
    send: gr.Button
    stop: gr.Button
    clear: gr.Button
    owner: gr.State  # the app's owner id (browser or login), for history


def send(values: dict, request: gr.Request = None, *, deps: CompareDeps, ui: SideUI) -> Iterator[list]:
    """The UI's send: the visible columns' settings from the form, their replies streamed into the chatbots."""
    n = int(values[ui.count])
    columns = [{"model": values[ui.models[i]], "temperature": values[ui.temperatures[i]],
                "max_new_tokens": values[ui.max_tokens[i]], "seed": values[ui.seeds[i]]} for i in range(n)]
    asker = asker_of(request, values[ui.owner])
    for states, convos in compare_stream(values[ui.prompt], columns, values[ui.mode], values[ui.system],
                                         values[ui.convos], asker, deps):
        shown = convos + [gr.skip()] * (MAX_COLUMNS - n)
        lines = [stats_line(s.stats, s.error) for s in states] + [gr.skip()] * (MAX_COLUMNS - n)
        yield [*shown, *lines, convos]


def stop_all(request: gr.Request = None, *, deps: CompareDeps) -> None:
    """Stop every column of this session's comparison."""
    deps.registry.stop(session_of(request))


def show_columns(count: float) -> list:
    return [gr.Column(visible=i < int(count)) for i in range(MAX_COLUMNS)]


def layout(deps: CompareDeps, owner: gr.State) -> SideUI:
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", placeholder="One prompt, every column answers", lines=2, scale=5,
                            elem_id="compare-prompt")
        with gr.Column(scale=1, min_width=160):
            send_btn = gr.Button("Send to all", variant="primary", elem_id="compare-send")
            stop_btn = gr.Button("Stop all", variant="stop")
            clear_btn = gr.Button("New comparison", size="sm")
    with gr.Row():
        mode = gr.Radio(list(MODES), value="chat", label="Mode", info="chat turn or raw completion", scale=1)
        count = gr.Slider(2, MAX_COLUMNS, value=2, step=1, label="Columns", scale=1)
        system = gr.Textbox("You are a helpful assistant. Answer briefly and accurately.", label="System prompt",
                            scale=3, lines=1)
    parts: dict[str, list] = {k: [] for k in ("models", "temperatures", "max_tokens", "seeds", "chats", "stats",
                                               "boxes")}
    with gr.Row(equal_height=False):
        for i in range(MAX_COLUMNS):
            with gr.Column(visible=i < 2, min_width=240) as box:
                parts["boxes"].append(box)
                parts["models"].append(model_dropdown(deps.choices, deps.default_model, f"Column {i + 1} model",
                                                      elem_id=f"compare-model-{i}"))
                with gr.Accordion("Temperature, length, seed", open=False):
                    parts["temperatures"].append(gr.Slider(0, 2, value=DEFAULT_TEMPERATURES[i], step=0.05,
                                                           label="Temperature"))
                    parts["max_tokens"].append(gr.Slider(1, deps.max_new_tokens, value=min(128, deps.max_new_tokens),
                                                         step=1, label="Max new tokens"))
                    parts["seeds"].append(gr.Number(-1, precision=0, label="Seed", info="-1 = random"))
                parts["chats"].append(gr.Chatbot(label=f"Column {i + 1}", height=360, elem_id=f"compare-chat-{i}"))
                parts["stats"].append(gr.Markdown(elem_id=f"compare-stats-{i}", elem_classes=["compare-stats"]))
    return SideUI(prompt=prompt, mode=mode, system=system, count=count, convos=gr.State([]), send=send_btn,
                  stop=stop_btn, clear=clear_btn, owner=owner, **parts)


def wire(ui: SideUI, deps: CompareDeps) -> None:
    inputs = {ui.prompt, ui.mode, ui.system, ui.count, ui.convos, ui.owner, *ui.models, *ui.temperatures,
              *ui.max_tokens, *ui.seeds}
    outputs = [*ui.chats, *ui.stats, ui.convos]
    gr.on([ui.send.click, ui.prompt.submit], bind(send, deps=deps, ui=ui), inputs, outputs,
          api_visibility="private", concurrency_id=TEXT_QUEUE, concurrency_limit=deps.slots)
    ui.stop.click(bind(stop_all, deps=deps), None, None, api_visibility="private", concurrency_limit=None)
    ui.count.change(show_columns, ui.count, ui.boxes, api_visibility="private")
    ui.clear.click(lambda: [[]] * MAX_COLUMNS + [""] * MAX_COLUMNS + [[]], None, [*ui.chats, *ui.stats, ui.convos],
                   api_visibility="private")
