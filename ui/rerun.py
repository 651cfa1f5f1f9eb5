"""Run a history entry again: send its prompt, model and settings back to the tab that made it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from ui.chat_tab import ChatTab
from ui.common import PARAM_NAMES, ParamControls
from ui.text_tab import TextTab

TAB_OF_KIND = {"chat": "chat", "completion": "text"}
Updates = dict[Any, Any]


def rerun_router(tabs: gr.Tabs, chat: ChatTab, text: TextTab) -> tuple[Callable[..., Updates], list[Any]]:
    """The "Run again" handler and the components it may update; it returns updates keyed by component."""
    targets: dict[str, tuple[gr.components.Component, gr.components.Component, ParamControls]] = {
        "chat": (chat.message, chat.model, chat.controls), "text": (text.prompt, text.model, text.controls)}

    def route(kind: str, prompt: str, model: str, params: dict[str, Any] | None) -> Updates:
        tab = TAB_OF_KIND.get(kind)
        if tab is None:
            if kind:
                gr.Warning(f"{kind} entries cannot be run again from here yet.")
            return {}
        box, model_box, controls = targets[tab]
        params = params or {}
        updates: Updates = {tabs: gr.Tabs(selected=tab), box: prompt, model_box: model}
        updates.update({c: params[name] for name, c in zip(PARAM_NAMES, controls.components(), strict=True)
                        if name in params})
        return updates

    outputs = [tabs, *(c for box, model_box, controls in targets.values()
                       for c in (box, model_box, *controls.components()))]
    return route, outputs
