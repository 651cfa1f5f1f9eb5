"""The Chat tab's tools panel: define functions as JSON schema, see the model's call, type the result back, and the
conversation continues. The call is generated under the same constraint as `/v1` tool calls
(serving/openai_structured.py), so it is always a well-formed call of one of the functions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import gradio as gr

from serving.openai_schema import ApiError
from serving.openai_structured import tool_plan
from ui.chat_tab import ChatDeps, ChatOutput, Messages, asker_of, stream_reply
from ui.common import TEXT_QUEUE, bind, params_or_error

EXAMPLE = json.dumps([{"name": "get_weather", "description": "Current weather in a city",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                                      "required": ["city"], "additionalProperties": False}}], indent=2)
MODES = ("required", "auto")


def _plan(tools_spec: str, tool_mode: str):
    try:
        functions = json.loads(tools_spec or "[]")
    except json.JSONDecodeError as exc:
        raise gr.Error(f"Tools: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); give a list of "
                       f"functions like the example") from None
    if not isinstance(functions, list) or not functions:
        raise gr.Error("Tools: give a non-empty JSON list of functions ({name, description, parameters})")
    tools = [{"type": "function", "function": f} for f in functions]
    try:
        return tool_plan(tools, tool_mode if tool_mode in MODES else "required")
    except ApiError as exc:  # the same checks as the API: the message names the function and the schema's fault
        raise gr.Error(f"Tools: {exc.message}") from None


def ask_with_tools(message: str, history: Messages, system_prompt: str, model: str, temperature: float,
                   top_p: float, top_k: int, repetition_penalty: float, max_new_tokens: int, seed: int,
                   tools_spec: str = EXAMPLE, tool_mode: str = "required", browser_id: str = "",
                   request: gr.Request = None, *, deps: ChatDeps) -> Iterator[ChatOutput]:
    """Send a message the model may answer with a function call (shown as its JSON)."""
    message = (message or "").strip()
    if not message:
        raise gr.Error("The message is empty: type something to send.")
    plan = _plan(tools_spec, tool_mode)
    params = params_or_error(deps.max_new_tokens, (temperature, top_p, top_k, repetition_penalty, max_new_tokens,
                                                   seed))
    system = "\n\n".join(p for p in ((system_prompt or "").strip(), plan.instructions) if p)
    yield from stream_reply(history or [], message, system, model, params, asker_of(request, browser_id), deps,
                            constraint=plan.constraint)


def send_result(result: str, history: Messages, system_prompt: str, model: str, temperature: float, top_p: float,
                top_k: int, repetition_penalty: float, max_new_tokens: int, seed: int, browser_id: str = "",
                request: gr.Request = None, *, deps: ChatDeps) -> Iterator[ChatOutput]:
    """Give the model the function's result; it answers in text."""
    result = (result or "").strip()
    if not result:
        raise gr.Error("The result is empty: type what the function returned.")
    params = params_or_error(deps.max_new_tokens, (temperature, top_p, top_k, repetition_penalty, max_new_tokens,
                                                   seed))
    yield from stream_reply(history or [], f"Function result: {result}", system_prompt or "", model, params,
                            asker_of(request, browser_id), deps)


def build_tools(ui: dict[str, Any], params: list, owner: Any, deps: ChatDeps) -> None:
    """Lay out the panel under the chat and wire it to the conversation (`params`: system, model, sliders)."""
    with gr.Accordion("Tools", open=False):
        spec = gr.Code(EXAMPLE, language="json", label="Functions (JSON list: name, description, parameters)",
                       lines=8, interactive=True)
        mode = gr.Radio(list(MODES), value="required", label="The model", info="required: always calls a "
                        "function; auto: calls one or answers in text")
        ask = gr.Button("Send the message with tools", size="sm")
        result = gr.Textbox(label="Function result", placeholder='{"celsius": 21}', lines=1)
        give = gr.Button("Send result", size="sm")
    outputs = [ui["chatbot"], ui["history"], ui["stats"]]
    ask.click(bind(ask_with_tools, deps=deps), [ui["message"], ui["history"], *params, spec, mode, owner], outputs,
              api_name="chat_tools", concurrency_id=TEXT_QUEUE, concurrency_limit=deps.slots, preprocess=False)
    give.click(bind(send_result, deps=deps), [result, ui["history"], *params, owner], outputs,
               api_name="tool_result", concurrency_id=TEXT_QUEUE, concurrency_limit=deps.slots, preprocess=False)
