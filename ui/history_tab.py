"""History tab: the caller's own generations, newest first; filter, search, open, run again, delete."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from config import AppConfig
from errors import NotFound
from identity import new_browser_id, owner_of, valid_browser_id
from store import KINDS, EmptyQuery, HistoryStore
from ui.common import PageLoad, bind
from ui.errors import to_gr_error

HEADERS = ["id", "when", "kind", "model", "prompt", "output"]
WIDTHS = ["5%", "14%", "9%", "17%", "25%", "30%"]  # the output in view, wrapped
ALL = "all"
PREVIEW = 120


@dataclass
class HistoryDeps:
    """Everything the History tab needs."""

    store: HistoryStore
    owner: gr.BrowserState | None = None  # the app's browser_id_state(); a fresh one when None


@dataclass
class HistoryTab:
    """Handles the app wires to: the owner id, and where a "Run again" click puts the entry's settings."""

    browser_id: gr.BrowserState
    table: gr.Dataframe
    rerun_inputs: list[Any]  # kind, prompt, model, params of the entry to run again
    rerun_event: Any  # Dependency of the "Run again" click: `.then(route, rerun_inputs, [...])`
    refresh: PageLoad  # lists entries: the app runs it when a page opens and when the tab is selected
    on_load: list[PageLoad]


def _preview(text: str) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= PREVIEW else text[:PREVIEW - 1] + "…"


def _rows(entries) -> list[list[Any]]:
    return [[e.id, e.when, e.kind, e.model, _preview(e.prompt), _preview(e.output or ("(image)" if e.image_path
                                                                                      else ""))] for e in entries]


def _kind(kind: str) -> str:
    return "" if kind in (None, "", ALL) else kind


def ensure_browser_id(browser_id: str) -> str:
    """The stored anonymous id, or a new one on a browser's first visit."""
    return valid_browser_id(browser_id) or new_browser_id()


def list_entries(kind: str, model: str, date_from: str, date_to: str, browser_id: str | None = None,
                 request: gr.Request = None, *, store: HistoryStore) -> list[list[Any]]:
    """The caller's entries, newest first, filtered by kind, model and dates (YYYY-MM-DD)."""
    try:
        return _rows(store.list(owner_of(request, browser_id), _kind(kind), (model or "").strip(),
                                date_from, date_to, limit=200))
    except Exception as exc:
        raise to_gr_error(exc) from None


def search_entries(query: str, kind: str, top_k: int, browser_id: str | None = None, request: gr.Request = None, *,
                   store: HistoryStore) -> list[list[Any]]:
    """The caller's entries best matching the query (keyword + meaning)."""
    try:
        hits = store.search(owner_of(request, browser_id), query, int(top_k or 10), kind=_kind(kind))
    except EmptyQuery as exc:
        raise gr.Error(f"{exc}.") from None
    except Exception as exc:
        raise to_gr_error(exc) from None
    return _rows(entry for entry, _ in hits)


def _entry_id(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise gr.Error(f"Pick an entry first: expected an entry id, got {value!r}.") from None


def open_entry(entry_id: Any, browser_id: str | None = None, request: gr.Request = None, *,
               store: HistoryStore) -> tuple[str, Any]:
    """One entry in full (markdown) and its image (PIL; None when it made no image)."""
    try:
        e = store.get(owner_of(request, browser_id), _entry_id(entry_id))
    except NotFound as exc:
        raise gr.Error(f"{exc}.") from None
    timings = ", ".join(f"{k} {v}" for k, v in e.timings.items())
    params = ", ".join(f"{k}={v}" for k, v in e.params.items())
    text = (f"**#{e.id} · {e.kind} · {e.model}** · {e.when}\n\nseed {e.seed} · {params or 'default parameters'}"
            f"{' · ' + timings if timings else ''}\n\n**Prompt**\n\n{e.prompt}\n\n**Output**\n\n{e.output}")
    return text, _image(e.image_path)


def _image(path: str | None) -> Any:
    # a PIL image, not the path: gradio refuses to serve files from the data directory (outside its allowed paths)
    if not path:
        return None
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.copy()
    except OSError:
        gr.Warning("The image file of this entry is missing.")
        return None


def select_entry(evt: gr.SelectData) -> int:
    """The id of the clicked row."""
    row = evt.row_value or []
    return int(row[0]) if row else gr.skip()


def rerun_entry(entry_id: Any, browser_id: str | None = None, request: gr.Request = None, *,
                store: HistoryStore) -> tuple[str, str, str, dict]:
    """(kind, prompt, model, params) of an entry, for the app to send back to the tab that made it."""
    try:
        return store.rerun_fields(owner_of(request, browser_id), _entry_id(entry_id))
    except NotFound as exc:
        raise gr.Error(f"{exc}.") from None


def delete_entry(entry_id: Any, kind: str, model: str, date_from: str, date_to: str, browser_id: str | None = None,
                 request: gr.Request = None, *, store: HistoryStore) -> tuple[list[list[Any]], str, None]:
    """Delete one of the caller's entries; returns the refreshed list."""
    entry = _entry_id(entry_id)
    if not store.delete(owner_of(request, browser_id), entry):
        raise gr.Error(f"There is no entry {entry} in your history.")
    rows = list_entries(kind, model, date_from, date_to, browser_id, request, store=store)
    return rows, f"Entry {entry} deleted.", None


def _secret(config: AppConfig | None) -> str | None:
    """A per-install secret for the browser-stored id, so it still decrypts after the app restarts."""
    if config is None:
        return None
    path = Path(config.data_dir) / "index" / "browser_state_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def browser_id_state(config: AppConfig | None = None, ensure_on_load: bool = True) -> gr.BrowserState:
    """The anonymous per-browser id; create it once inside the Blocks, before the tabs that record history.

    With `config`, its encryption secret is kept in the data directory so the id survives app restarts too.
    """
    state = gr.BrowserState("", storage_key="playground-owner", secret=_secret(config))
    root = gr.context.Context.root_block
    if root is not None and ensure_on_load:  # the app passes False and gives the id out itself (one writer)
        root.load(ensure_browser_id, state, state, api_visibility="private", queue=False)
    return state


def _layout() -> dict[str, Any]:
    ui: dict[str, Any] = {}
    with gr.Row():
        ui["query"] = gr.Textbox(label="Search your history", placeholder="words or a description",
                                 scale=4, elem_id="history-query")
        ui["search"] = gr.Button("Search", variant="primary", scale=1, elem_id="history-search")
        ui["top_k"] = gr.Slider(1, 50, value=10, step=1, label="Results", scale=1)
    with gr.Row():
        ui["kind"] = gr.Dropdown([ALL, *KINDS], value=ALL, label="Kind")
        ui["model"] = gr.Textbox("", label="Model", placeholder="any")
        ui["from"] = gr.Textbox("", label="From (YYYY-MM-DD)")
        ui["to"] = gr.Textbox("", label="To (YYYY-MM-DD)")
        ui["list"] = gr.Button("Newest first", elem_id="history-list")
    ui["table"] = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, column_widths=WIDTHS,
                               elem_id="history-table")
    with gr.Row():
        ui["entry"] = gr.Number(label="Entry id", precision=0, elem_id="history-entry")
        ui["open"] = gr.Button("Open")
        ui["rerun"] = gr.Button("Run again", variant="primary")
        ui["delete"] = gr.Button("Delete", variant="stop")
    ui["detail"] = gr.Markdown(elem_id="history-detail")
    ui["image"] = gr.Image(label="Image", type="pil", interactive=False)
    with gr.Row(visible=False):
        ui["r_kind"], ui["r_prompt"], ui["r_model"] = gr.Textbox(), gr.Textbox(), gr.Textbox()
        ui["r_params"] = gr.JSON()
    return ui


def build(deps: HistoryDeps) -> HistoryTab:
    """Lay out the History tab, then wire its events."""
    store = deps.store
    browser_id = deps.owner if deps.owner is not None else browser_id_state()
    ui = _layout()
    filters = [ui["kind"], ui["model"], ui["from"], ui["to"]]
    listing = bind(list_entries, store=store)
    ui["list"].click(listing, [*filters, browser_id], ui["table"], api_name="history_list")
    gr.on([ui["search"].click, ui["query"].submit], bind(search_entries, store=store),
          [ui["query"], ui["kind"], ui["top_k"], browser_id], ui["table"], api_name="history_search")
    ui["table"].select(select_entry, None, ui["entry"], api_visibility="private").then(
        bind(open_entry, store=store), [ui["entry"], browser_id], [ui["detail"], ui["image"]],
        api_visibility="private")
    ui["open"].click(bind(open_entry, store=store), [ui["entry"], browser_id], [ui["detail"], ui["image"]],
                     api_name="history_open")
    rerun = ui["rerun"].click(bind(rerun_entry, store=store), [ui["entry"], browser_id],
                              [ui["r_kind"], ui["r_prompt"], ui["r_model"], ui["r_params"]], api_name="history_rerun")
    ui["delete"].click(bind(delete_entry, store=store), [ui["entry"], *filters, browser_id],
                       [ui["table"], ui["detail"], ui["image"]], api_name="history_delete")
    refresh = PageLoad(listing, [*filters, browser_id], [ui["table"]])
    return HistoryTab(browser_id=browser_id, table=ui["table"],
                      rerun_inputs=[ui["r_kind"], ui["r_prompt"], ui["r_model"], ui["r_params"]], rerun_event=rerun,
                      refresh=refresh, on_load=[refresh])
