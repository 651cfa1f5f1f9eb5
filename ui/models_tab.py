"""Models tab: what is loaded, where, in which precision, how much memory; load and unload."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import gradio as gr
import psutil

from engines.cache import ModelCache
from engines.catalog import Catalog, shipped_catalog
from ui.common import PageLoad
from ui.errors import to_gr_error
from ui.protocols import ModelLoader

COLUMNS = ["model", "task", "device", "engine", "weights", "parameters (M)", "memory (MB)", "load time (s)",
           "idle (s)", "in use", "source", "activity"]
# shares of the table's width: every column in view on a laptop screen, long names and the batch line wrapped
WIDTHS = ["17%", "8%", "5%", "7%", "11%", "7%", "6%", "5%", "5%", "5%", "7%", "17%"]


@dataclass
class ModelsDeps:
    """Everything the Models tab needs."""

    cache: ModelCache
    loaders: dict[str, ModelLoader]  # task -> engine that can load models for it
    placement_note: Callable[[], str]  # e.g. "cuda was requested but is not available"
    catalog: Catalog = field(default_factory=shipped_catalog)  # suggestions per task


def list_models(deps: ModelsDeps) -> tuple[list[list[Any]], str, gr.Dropdown]:
    """The loaded models as table rows, a memory summary, and the unload choices."""
    # memory: an OpenVINO model's engine process as it is now, what the load added for torch models
    rows = [[r.key, r.task, r.device, r.engine, r.dtype, round(r.parameters / 1e6, 1), r.memory_mb, r.load_seconds,
             r.idle_seconds, r.in_use, r.source, r.activity] for r in deps.cache.rows()]
    loading = deps.cache.loading()
    summary = (f"**{len(rows)}** loaded (limit {deps.cache.max_models}) · models "
               f"**{sum(row[6] for row in rows):.0f} MB** · the app **{_app_resident_mb():.0f} MB** resident "
               f"(with its engine and training processes)")
    if loading:
        summary += f" · loading: {', '.join(loading)}"
    note = deps.placement_note()
    if note:
        summary += f"\n\n⚠️ {note}"
    keys = [r[0] for r in rows]
    return rows, summary, gr.Dropdown(choices=keys, value=keys[-1] if keys else None)


def load_model(task: str, ref: str, progress: gr.Progress = gr.Progress(), *, deps: ModelsDeps) -> str:
    """Load a model for a task (kept in the cache, ready for the tabs)."""
    loader = deps.loaders.get(task)
    if loader is None:
        raise gr.Error(f"Unknown task {task!r}; choose one of {sorted(deps.loaders)}.")
    ref = (ref or "").strip()
    if not ref:
        raise gr.Error("Type a model id (owner/name) or a folder to load.")
    start = time.perf_counter()
    try:
        loader.load(ref, progress=lambda fraction, message: progress(fraction, desc=message))
    except Exception as exc:
        raise to_gr_error(exc, f"Could not load {ref}", kept="The models already loaded are still available.") from None
    return f"Loaded **{ref}** in {time.perf_counter() - start:.1f} s."


def unload_model(key: str, *, deps: ModelsDeps) -> str:
    """Unload a model and free its memory."""
    if not key:
        raise gr.Error("Choose a loaded model to unload.")
    if not deps.cache.unload(key):
        raise gr.Error(f"{key} is not loaded.")
    return f"Unloaded **{key}**."


@dataclass
class ModelsTab:
    """The loaded-models table (filled when a page opens)."""

    view: list[gr.components.Component]
    on_load: list[PageLoad]


def build(deps: ModelsDeps) -> ModelsTab:
    """Lay out the Models tab, then wire its events."""
    catalog = deps.catalog
    tasks = sorted(deps.loaders)
    summary = gr.Markdown()
    table = gr.Dataframe(headers=COLUMNS, label="Loaded models", interactive=False, wrap=True,
                         column_widths=WIDTHS)
    with gr.Row():
        with gr.Column():
            task = gr.Dropdown(tasks, value=tasks[0], label="Task")
            ref = gr.Dropdown(catalog.choices(tasks[0]), value=catalog.default(tasks[0]), label="Model to load",
                              allow_custom_value=True, info="hub id or a local folder")
            load = gr.Button("Load", variant="primary")
        with gr.Column():
            loaded = gr.Dropdown([], label="Loaded model", allow_custom_value=True)
            unload = gr.Button("Unload", variant="stop")
            refresh = gr.Button("Refresh")
    status = gr.Markdown()
    timer = gr.Timer(5)

    listing = partial(list_models, deps)
    view = [table, summary, loaded]
    task.change(lambda t: gr.Dropdown(catalog.choices(t), value=catalog.default(t) if t in catalog.tasks else None),
                task, ref, api_visibility="private")
    load.click(partial(load_model, deps=deps), [task, ref], status, api_name="load_model").then(
        listing, None, view, api_visibility="private")
    unload.click(partial(unload_model, deps=deps), loaded, status, api_name="unload_model").then(
        listing, None, view, api_visibility="private")
    refresh.click(listing, None, view, api_name="models_list")
    timer.tick(listing, None, view, api_visibility="private", show_progress="hidden")
    return ModelsTab(view=view, on_load=[PageLoad(listing, [], view)])


def _app_resident_mb() -> float:
    """This process and its children (an OpenVINO engine process per model, a fine-tuning run)."""
    me = psutil.Process(os.getpid())
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:  # it ended while we looked
            pass
    return total / 2**20
