"""What the Compare tab's parts share: their dependencies, column settings, and how a column's stats read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import gradio as gr

from compare.arena import Arena
from compare.evaluation import EvalRunner
from compare.protocols import Recorder, TextGenerator
from engines.params import parse_params
from errors import UserError
from serving.sessions import StopRegistry
from store.votes import VoteStore


class DatasetOpener(Protocol):
    """databrowser.DatasetBrowser's `open` and `open_upload`."""

    def open(self, session: str, ref: Any) -> Any: ...

    def open_upload(self, session: str, path: Any, original_name: str = "") -> tuple[Any, Any]: ...


@dataclass
class CompareDeps:
    """Everything the Compare tab uses, built once in services.py."""

    engine: TextGenerator
    registry: StopRegistry
    arena: Arena
    votes: VoteStore
    evals: EvalRunner
    datasets: DatasetOpener
    history: Recorder | None
    max_new_tokens: int
    choices: list[str]  # chat models offered in the dropdowns
    default_model: str
    slots: int = 8  # generations the UI runs at once (ui.common.text_slots)
    owner: gr.State | None = None  # the page's owner id (app.py): votes, runs and History entries are theirs
    datasets_state: gr.State | None = None  # the Datasets tab's open dataset, for "use the open dataset"


def column_params(deps: CompareDeps, settings: dict[str, Any]) -> Any:
    """Validated sampling parameters from a column's settings (unknown keys are refused by name)."""
    try:
        return parse_params(deps.max_new_tokens, **{k: v for k, v in settings.items() if v is not None})
    except ValueError as exc:
        raise UserError(str(exc)) from None


def stats_line(stats: dict[str, Any], error: str = "") -> str:
    """One line under a column: tokens, speed, first token, seed (or the column's error)."""
    if error:
        return f"⚠️ {error}"
    if not stats:
        return ""
    return (f"{stats['generated_tokens']} tokens · {stats['tokens_per_s']} tokens/s · first token "
            f"{stats['ttft_s'] * 1000:.0f} ms · seed {stats['seed']} · {stats['finish_reason']}")


def model_dropdown(deps_choices: list[str], value: str | None, label: str, multiselect: bool = False,
                   elem_id: str | None = None) -> gr.Dropdown:
    return gr.Dropdown(deps_choices, value=value, label=label, allow_custom_value=True, multiselect=multiselect,
                       info="catalog name, hub id or a local folder", elem_id=elem_id)
