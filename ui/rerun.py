"""Run a history entry again: send its prompt, model and settings back to the tab that made it."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.common import PARAM_NAMES

TAB_OF_KIND = {"chat": "chat", "completion": "text"}


def route_rerun(kind: str, prompt: str, model: str, params: dict[str, Any] | None) -> list[Any]:
    """Updates for [tabs, chat message, chat model, *chat controls, text prompt, text model, *text controls]."""
    tab = TAB_OF_KIND.get(kind)
    skip = [gr.skip()] * (2 + len(PARAM_NAMES))
    if tab is None:
        if kind:
            gr.Warning(f"{kind} entries cannot be run again from here yet.")
        return [gr.skip(), *skip, *skip]
    params = params or {}
    values = [prompt, model, *(params.get(name, gr.skip()) for name in PARAM_NAMES)]
    chat_values, text_values = (values, skip) if tab == "chat" else (skip, values)
    return [gr.Tabs(selected=tab), *chat_values, *text_values]
