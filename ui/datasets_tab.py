"""Datasets tab: open any dataset (samples, files, uploads, the hub), page, search, filter, summarise, export.

The Arrow data lives in `DatasetBrowser`; the per-user gr.State holds only plain data: the session key, what is
open (a SourceRef dict) and the current view (a ViewSpec dict). Handlers are plain functions; `build` lays out the
tab, then wires events. Stable API endpoints (gradio_client) are registered by `_register_api`.
"""

from __future__ import annotations

import functools
import logging
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import gradio as gr
import pandas as pd

from databrowser import DatasetBrowser, SourceRef, ViewSpec, api, render
from databrowser.table import pil_image
from errors import UserError
from ui.errors import to_gr_error

logger = logging.getLogger(__name__)

PAGE_SIZES = [10, 25, 50, 100, 200, 500]
EXPORT_FORMATS = ["csv", "jsonl", "parquet"]
UPLOAD_TYPES = [".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet", ".arrow", ".feather", ".txt"]
EMPTY_STATE: dict = {"session": "", "ref": None, "spec": {}}


def user_errors(fn: Callable) -> Callable:
    """The error policy (ui.errors) for a handler that may be a functools.partial; the tab keeps what was open."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    name = getattr(target, "__name__", "handler")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise to_gr_error(exc, "" if isinstance(exc, UserError) else f"The datasets tab's {name} failed",
                              kept="" if isinstance(exc, UserError) else "The tab keeps what was open.") from None
    # gradio finds gr.Request / gr.SelectData parameters through the resolved type hints
    wrapper.__annotations__ = typing.get_type_hints(target)
    return wrapper


def _session(state: dict, request: gr.Request | None) -> str:
    return state.get("session") or (getattr(request, "session_hash", None) or "local")


def _ref(state: dict) -> SourceRef:
    if not state.get("ref"):
        raise gr.Error("No dataset is open: pick a sample, a path or a hub id and press Open.")
    return SourceRef(**state["ref"])


def _view_outputs(browser: DatasetBrowser, session: str, ref: SourceRef, spec: ViewSpec, page: int,
                  page_size: int, row: int | None = None) -> tuple:
    """(table, gallery, page info, page number) for one page of the view."""
    ds = browser.open(session, ref)
    pg = browser.page(session, ref, spec, int(page or 1), int(page_size), row)
    headers, rows, datatypes = render.table_rows(ds, pg)
    table = gr.Dataframe(value=pd.DataFrame(rows, columns=headers), datatype=datatypes)
    return table, render.gallery_items(ds, pg), render.page_info(pg), pg.page


def _status(ds) -> str:
    lines = [f"**{ds.name}** · {ds.num_rows:,} rows · {len(ds.columns)} columns"
             + (f" · split `{ds.split}`" if ds.split else "") + (f" · config `{ds.config}`" if ds.config else "")]
    lines += [f"- {note}" for note in ds.notes]
    return "\n".join(lines)


def open_dataset(source: str, config: str, split: str, stream: bool, page_size: int, state: dict,
                 request: gr.Request, *, browser: DatasetBrowser) -> tuple:
    """Open a source: (state, status, schema, split choices, image viewer, table, gallery, page info, page)."""
    session = _session(state, request)
    ref = SourceRef((source or "").strip(), (config or "").strip(), (split or "").strip(), bool(stream))
    ds = browser.open(session, ref)
    return _after_open(browser, session, ref, ds, page_size)


def upload_dataset(path: str | None, page_size: int, state: dict, request: gr.Request, *,
                   browser: DatasetBrowser) -> tuple:
    """Convert and open an uploaded file; same outputs as `open_dataset`."""
    if not path:
        raise gr.Error("No file arrived: upload a CSV, TSV, JSON, JSON Lines, Parquet, Arrow or text file.")
    session = _session(state, request)
    ref, ds = browser.open_upload(session, path, path.rsplit("/", 1)[-1])
    return _after_open(browser, session, ref, ds, page_size)


def _after_open(browser: DatasetBrowser, session: str, ref: SourceRef, ds, page_size: int) -> tuple:
    for note in ds.notes:
        gr.Warning(note)
    state = {"session": session, "ref": ref.to_dict(), "spec": {}}
    schema = pd.DataFrame(ds.schema_rows(), columns=["column", "type"])
    splits = gr.Dropdown(choices=list(ds.splits), value=ds.split or None)
    has_images = any(col.kind == "image" for col in ds.columns)
    return (state, _status(ds), schema, splits, gr.Image(value=None, visible=has_images),
            *_view_outputs(browser, session, ref, ViewSpec(), 1, page_size))


def show_page(page: float, page_size: int, state: dict, request: gr.Request, *, browser: DatasetBrowser,
              step: int = 0) -> tuple:
    """Page `page` (+ `step`) of the current view: (table, gallery, page info, page)."""
    ref = _ref(state)
    return _view_outputs(browser, _session(state, request), ref, ViewSpec(**state.get("spec", {})),
                         int(page or 1) + step, page_size)


def go_to_row(row: float | None, page_size: int, state: dict, request: gr.Request, *,
              browser: DatasetBrowser) -> tuple:
    """The page holding position `row` (0-based) of the current view."""
    if row is None:
        raise gr.Error("Give a row number (0-based position in the current view).")
    ref = _ref(state)
    return _view_outputs(browser, _session(state, request), ref, ViewSpec(**state.get("spec", {})), 1,
                         page_size, int(row))


def apply_view(search: str, where: str, order_by: str, page_size: int, state: dict, request: gr.Request, *,
               browser: DatasetBrowser) -> tuple:
    """Apply search / filter / sort over the whole dataset: (state, table, gallery, page info, page)."""
    ref = _ref(state)
    spec = ViewSpec(search or "", where or "", order_by or "")
    outputs = _view_outputs(browser, _session(state, request), ref, spec, 1, page_size)
    return ({**state, "spec": asdict(spec)}, *outputs)


def select_cell(state: dict, evt: gr.SelectData, request: gr.Request, *, browser: DatasetBrowser) -> tuple:
    """(full text, image or None) of the clicked cell; the table cuts long cells."""
    ref = _ref(state)
    row_value, (_, col) = evt.row_value, evt.index
    if not row_value or col == 0:
        return (str(row_value[0]) if row_value else ""), None
    ds = browser.open(_session(state, request), ref)
    column = ds.columns[col - 1]
    value = browser.cell(_session(state, request), ref, int(row_value[0]), column.name)
    text = render.cell_text(value, column)
    return ("" if text is None else str(text)), (pil_image(value) if column.kind == "image" else None)


def send_cell(text: str) -> str:
    """Copy the selected cell into another tab's prompt."""
    if not (text or "").strip():
        raise gr.Error("Select a cell in the table first; its text is what gets sent.")
    return text


def compute_stats(state: dict, request: gr.Request, *, browser: DatasetBrowser) -> tuple:
    """Statistics of every column over the current view: (summary table, column choice, plot)."""
    ref = _ref(state)
    stats = browser.stats(_session(state, request), ref, ViewSpec(**state.get("spec", {})))
    headers, rows = render.stats_table(stats)
    first = next((s.name for s in stats if s.bars), stats[0].name if stats else None)
    choice = gr.Dropdown(choices=[s.name for s in stats], value=first)
    return pd.DataFrame(rows, columns=headers), choice, _plot(stats, first)


def _plot(stats, column: str | None):
    title, bars = render.stats_bars(stats, column or "")
    return gr.BarPlot(value=pd.DataFrame(bars or [], columns=["bin", "count", "order"]), title=title,
                      sort=[b["bin"] for b in bars] or None, y_lim=[0, None])


def plot_column(column: str, state: dict, request: gr.Request, *, browser: DatasetBrowser):
    """The plot of one column from the (cached) statistics of the current view."""
    ref = _ref(state)
    return _plot(browser.stats(_session(state, request), ref, ViewSpec(**state.get("spec", {}))), column)


def export_view(fmt: str, state: dict, request: gr.Request, *, browser: DatasetBrowser) -> str:
    """Write the current view (search + filter + sort) to a file for download."""
    ref = _ref(state)
    return str(browser.export(_session(state, request), ref, ViewSpec(**state.get("spec", {})), fmt))


def _source_row(browser: DatasetBrowser, offline: bool, max_upload_mb: int) -> dict[str, Any]:
    samples = [(f"{s['title']} ({s['source']})", s["source"]) for s in browser.samples()]
    with gr.Row(equal_height=True):
        source = gr.Dropdown(samples, value=samples[0][1] if samples else None, allow_custom_value=True, scale=4,
                             label="Dataset", elem_id="datasets-source",
                             info="A sample, a path under the allowed folders, or hub:<owner/name>")
        hub_config = gr.Textbox(label="Config", scale=1, placeholder="(default)")
        split = gr.Dropdown([], label="Split", allow_custom_value=True, scale=1)
        stream = gr.Checkbox(label="Stream (first rows only)", value=False, scale=1,
                             interactive=not offline)
        open_btn = gr.Button("Open", variant="primary", scale=1, elem_id="datasets-open")
    with gr.Accordion(f"Upload a file (up to {max_upload_mb} MB)", open=False):
        upload = gr.File(file_types=UPLOAD_TYPES, type="filepath", label="CSV, TSV, JSON, JSON Lines, Parquet, "
                         "Arrow or text")
    status = gr.Markdown("Open a dataset to browse it.", elem_id="datasets-status")
    with gr.Accordion("Schema (feature types)", open=False):
        schema = gr.Dataframe(headers=["column", "type"], interactive=False, show_label=False)
    return dict(source=source, hub_config=hub_config, split=split, stream=stream, open_btn=open_btn,
                upload=upload, status=status, schema=schema)


def _view_row() -> dict[str, Any]:
    with gr.Row(equal_height=True):
        search = gr.Textbox(label="Search (all text columns, case-insensitive)", scale=2, elem_id="datasets-search")
        where = gr.Textbox(label="Filter (SQL WHERE)", placeholder="label = 3 AND length(text) > 40", scale=2)
        order_by = gr.Textbox(label="Sort (SQL ORDER BY)", placeholder="length(text) DESC", scale=1)
        apply_btn = gr.Button("Apply", variant="primary", scale=0, min_width=80, elem_id="datasets-apply")
        clear_btn = gr.Button("Clear", scale=0, min_width=80)
    return dict(search=search, where=where, order_by=order_by, apply_btn=apply_btn, clear_btn=clear_btn)


def _table_tab(send_targets: Mapping[str, gr.Textbox]) -> dict[str, Any]:
    with gr.Row(elem_id="datasets-pager"):  # buttons aligned with the inputs' boxes (assets/style.css)
        prev_btn = gr.Button("◀ Previous", size="sm", scale=1, elem_id="datasets-prev")
        page = gr.Number(value=1, precision=0, minimum=1, label="Page", scale=1, min_width=90)
        next_btn = gr.Button("Next ▶", size="sm", scale=1, elem_id="datasets-next")
        page_size = gr.Dropdown(PAGE_SIZES, value=100, label="Rows a page", scale=1, min_width=90)
        row = gr.Number(value=None, precision=0, minimum=0, label="Go to row (Enter)", scale=1, min_width=90)
    info = gr.Markdown(elem_id="datasets-page-info")
    table = gr.Dataframe(pd.DataFrame(columns=["(no dataset open)"]), interactive=False, wrap=True, max_height=560,
                         show_label=False, elem_id="datasets-table", buttons=["fullscreen", "copy"])
    with gr.Row():
        cell = gr.Textbox(label="Selected cell (full text)", lines=3, max_lines=12, buttons=["copy"], scale=4,
                          elem_id="datasets-cell")
        # also what lets the table draw image columns: gradio renders them with the Image component
        cell_image = gr.Image(label="Selected image", height=160, interactive=False, scale=1, type="pil",
                              visible=False)
    with gr.Row():
        send_buttons = {label: gr.Button(f"Send to {label}", size="sm") for label in send_targets}
    return dict(prev_btn=prev_btn, page=page, next_btn=next_btn, page_size=page_size, row=row, info=info,
                table=table, cell=cell, cell_image=cell_image, send_buttons=send_buttons)


def _stats_export_tabs() -> dict[str, Any]:
    with gr.Tab("Gallery"):
        gallery = gr.Gallery(columns=10, height=520, show_label=False, elem_id="datasets-gallery")
    with gr.Tab("Statistics"):
        stats_btn = gr.Button("Compute statistics of the current view", elem_id="datasets-stats")
        stats_table = gr.Dataframe(interactive=False, show_label=False)
        stats_column = gr.Dropdown([], label="Plot column")
        stats_plot = gr.BarPlot(x="bin", y="count", height=320, show_label=False, x_label_angle=-40)
    with gr.Tab("Export"):
        fmt = gr.Radio(EXPORT_FORMATS, value="csv", label="Format")
        export_btn = gr.Button("Export the current view (search + filter + sort)")
        export_file = gr.File(label="Download", interactive=False)
    return dict(gallery=gallery, stats_btn=stats_btn, stats_table=stats_table, stats_column=stats_column,
                stats_plot=stats_plot, fmt=fmt, export_btn=export_btn, export_file=export_file)


@dataclass
class DatasetsDeps:
    """Everything the Datasets tab needs."""

    browser: DatasetBrowser
    send_targets: Mapping[str, gr.Textbox] = field(default_factory=dict)  # "Send cell to" label -> other tab's box
    offline: bool = True  # no hub streaming offered
    max_upload_mb: int = 200


@dataclass
class DatasetsTab:
    """What other tabs may read: the dataset named in the source box, and the open view (session, ref, spec)."""

    source: gr.Dropdown
    state: gr.State


def build(deps: DatasetsDeps) -> DatasetsTab:
    """Lay out the Datasets tab inside the caller's open gr.Tab, then wire its events and API."""
    browser, send_targets = deps.browser, deps.send_targets
    state = gr.State(dict(EMPTY_STATE), delete_callback=functools.partial(_forget_session, browser=browser))
    c = _source_row(browser, deps.offline, deps.max_upload_mb)
    c.update(_view_row())
    with gr.Tabs():
        with gr.Tab("Table"):
            c.update(_table_tab(send_targets))
        c.update(_stats_export_tabs())
    _wire(c, state, browser, send_targets)
    _register_api(browser)
    return DatasetsTab(source=c["source"], state=state)


def _forget_session(value: dict, *, browser: DatasetBrowser) -> None:
    if isinstance(value, dict) and value.get("session"):
        browser.close_session(value["session"])


def _wire(c: dict[str, Any], state: gr.State, browser: DatasetBrowser, send_targets: Mapping[str, gr.Textbox]):
    bind = functools.partial
    private = {"api_visibility": "private"}
    view = [c["table"], c["gallery"], c["info"], c["page"]]
    opened = [state, c["status"], c["schema"], c["split"], c["cell_image"], *view]
    c["open_btn"].click(user_errors(bind(open_dataset, browser=browser)),
                        [c["source"], c["hub_config"], c["split"], c["stream"], c["page_size"], state], opened,
                        **private)
    c["upload"].upload(user_errors(bind(upload_dataset, browser=browser)), [c["upload"], c["page_size"], state],
                       opened, **private)
    paging = [c["page"], c["page_size"], state]
    for trigger, step in ((c["prev_btn"].click, -1), (c["next_btn"].click, 1), (c["page"].submit, 0),
                          (c["page_size"].input, 0)):
        trigger(user_errors(bind(show_page, browser=browser, step=step)), paging, view, **private)
    c["row"].submit(user_errors(bind(go_to_row, browser=browser)), [c["row"], c["page_size"], state], view,
                    **private)
    view_inputs = [c["search"], c["where"], c["order_by"], c["page_size"], state]
    for trigger in (c["apply_btn"].click, c["search"].submit, c["where"].submit, c["order_by"].submit):
        trigger(user_errors(bind(apply_view, browser=browser)), view_inputs, [state, *view], **private)
    c["clear_btn"].click(lambda: ("", "", ""), None, [c["search"], c["where"], c["order_by"]], **private).then(
        user_errors(bind(apply_view, browser=browser)), view_inputs, [state, *view], **private)
    c["table"].select(user_errors(bind(select_cell, browser=browser)), [state], [c["cell"], c["cell_image"]],
                      **private)
    for label, button in c["send_buttons"].items():
        button.click(user_errors(send_cell), c["cell"], send_targets[label], **private)
    c["stats_btn"].click(user_errors(bind(compute_stats, browser=browser)), [state],
                         [c["stats_table"], c["stats_column"], c["stats_plot"]], **private)
    c["stats_column"].input(user_errors(bind(plot_column, browser=browser)), [c["stats_column"], state],
                            c["stats_plot"], **private)
    c["export_btn"].click(user_errors(bind(export_view, browser=browser)), [c["fmt"], state], c["export_file"],
                          **private)


def _typed(fn: Callable) -> Callable:
    """Resolve string annotations (from __future__) so gr.api can read the endpoint's types."""
    target = getattr(fn, "__func__", fn)
    target.__annotations__ = typing.get_type_hints(target)
    return fn


def _register_api(browser: DatasetBrowser) -> None:
    """Stable, stateless endpoints named datasets_*: every call names its source (see `databrowser.api`)."""
    endpoints = api.BrowserApi(browser)
    for fn in endpoints.endpoints():
        gr.api(user_errors(_typed(fn)), api_name=fn.__name__)
    with gr.Group(visible=False):  # export returns a file, so it goes through components that serve one
        names = ["source", "search", "where", "order_by", "fmt", "config", "split"]
        fields = [gr.Textbox(label=name, value="csv" if name == "fmt" else "") for name in names]
        button, out = gr.Button("export"), gr.File(label="export")
    button.click(user_errors(endpoints.export), fields, out, api_name="datasets_export")
