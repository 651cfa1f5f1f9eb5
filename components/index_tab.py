"""Index tab: collections of documents (uploads or a dataset column), indexing progress, and hybrid search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.common import session_key
from components.common import bind
from config import AppConfig
from databrowser.errors import DatasetError
from databrowser.sources import SourceRef
from playground_index import CollectionIndex, DocumentError, EmptyQuery
from playground_index.documents import column_documents, supported_types
from playground_index.search import MODES

RESULT_HEADERS = ["rank", "score", "document", "chunk", "text", "bm25", "similarity"]
USER_ERRORS = (ValueError, LookupError, DatasetError)
POLL_S = 1.0


@dataclass
class IndexDeps:
    index: CollectionIndex
    browser: Any  # databrowser.DatasetBrowser
    max_upload_bytes: int


@dataclass
class IndexTab:
    collection: gr.Dropdown
    status: gr.Markdown


def _choices(index: CollectionIndex, value: str | None = None) -> gr.Dropdown:
    names = index.names()
    return gr.Dropdown(choices=names, value=value if value in names else (names[0] if names else None))


def collection_status(name: str, *, index: CollectionIndex) -> tuple[str, gr.Timer]:
    """The collection's counts and progress; the poll timer runs only while it is indexing."""
    if not name:
        return "No collection selected: create one below.", gr.Timer(active=False)
    try:
        info = index.info(name)
    except LookupError as exc:
        return str(exc), gr.Timer(active=False)
    return info.describe(), gr.Timer(active=info.indexing)


def list_collections(*, index: CollectionIndex) -> list[dict[str, Any]]:
    """Every collection with its counts."""
    return [{"name": i.name, "documents": i.documents, "chunks": i.chunks, "embedded": i.embedded,
             "indexing": i.indexing, "chunk_size": i.chunk_size, "overlap": i.overlap} for i in index.list()]


def create_collection(name: str, chunk_size: int, overlap: int, *, index: CollectionIndex) -> tuple[gr.Dropdown, str]:
    """Create a collection (chunk size and overlap in words)."""
    try:
        info = index.create(name, int(chunk_size), int(overlap))
    except USER_ERRORS as exc:
        raise gr.Error(str(exc)) from None
    return _choices(index, info.name), info.describe()


def delete_collection(name: str, *, index: CollectionIndex) -> tuple[gr.Dropdown, str]:
    """Delete a collection and everything in it."""
    try:
        info = index.delete(name)
    except USER_ERRORS as exc:
        raise gr.Error(str(exc)) from None
    return _choices(index), f"Deleted {info.name} ({info.documents:,} documents, {info.chunks:,} chunks)."


def _added(name: str, result, index: CollectionIndex) -> tuple[str, gr.Timer]:
    info = index.info(name)
    skipped = f"; {result.skipped} already indexed (same content), skipped" if result.skipped else ""
    return (f"Added {result.added} documents ({result.chunks:,} chunks){skipped}. {info.describe()}",
            gr.Timer(active=info.indexing))


def add_documents(name: str, files: list[str] | None, progress: gr.Progress = gr.Progress(), *,
                  deps: IndexDeps) -> tuple[str, gr.Timer]:
    """Add uploaded .txt/.md/.pdf files; keyword search works at once, meaning search once embedded."""
    if not files:
        raise gr.Error(f"No files: upload one or more of {', '.join(supported_types())}.")
    paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]
    try:
        result = deps.index.add_files(name, paths, deps.max_upload_bytes,
                                      progress=lambda f, m: progress(f, desc=m))
    except DocumentError as exc:
        raise gr.Error(f"Nothing was added: {exc}.") from None
    except USER_ERRORS as exc:
        raise gr.Error(str(exc)) from None
    return _added(name, result, deps.index)


def add_dataset_column(name: str, source: str, split: str, column: str, max_rows: int, request: gr.Request = None,
                       progress: gr.Progress = gr.Progress(), *, deps: IndexDeps) -> tuple[str, gr.Timer]:
    """Index one text column of a dataset (sample:<name>, hub:<id>, or a path), one document per row."""
    if not (source or "").strip() or not (column or "").strip():
        raise gr.Error("Give a dataset (e.g. sample:shakespeare) and the name of a text column.")
    try:
        ds = deps.browser.open(session_key(request), SourceRef(source.strip(), split=(split or "").strip()))
        limit = int(max_rows) if max_rows else None
        docs = column_documents(ds, column.strip(), limit)
        total = min(ds.num_rows, limit or ds.num_rows)
        result = deps.index.add_documents(name, docs, progress=lambda f, m: progress(f, desc=m), total=total)
    except USER_ERRORS as exc:
        raise gr.Error(str(exc)) from None
    return _added(name, result, deps.index)


def search_collection(name: str, query: str, mode: str, top_k: int, min_similarity: float, *,
                      index: CollectionIndex) -> tuple[list[list[Any]], str]:
    """The best passages; the note says when the collection is still indexing or nothing matched."""
    try:
        result = index.search(name, query, int(top_k), mode or "hybrid", float(min_similarity))
    except EmptyQuery as exc:
        raise gr.Error(f"{exc}.") from None
    except USER_ERRORS as exc:
        raise gr.Error(str(exc)) from None
    rows = [[i, p.score, p.document, p.chunk, p.text, p.bm25, p.similarity]
            for i, p in enumerate(result.passages, start=1)]
    notes = list(result.notes)
    if not rows:
        notes.append("No passage matched" + (" yet." if result.info.indexing else "."))
    return rows, " ".join(notes)


def _layout(index: CollectionIndex) -> dict[str, Any]:
    ui: dict[str, Any] = {}
    with gr.Row():
        ui["collection"] = gr.Dropdown(index.names(), value=(index.names() or [None])[0], label="Collection",
                                       allow_custom_value=True, scale=3, elem_id="index-collection")
        ui["refresh"] = gr.Button("Refresh", scale=1)
        ui["delete"] = gr.Button("Delete collection", variant="stop", scale=1)
    ui["status"] = gr.Markdown(elem_id="index-status")
    ui["timer"] = gr.Timer(POLL_S, active=False)
    with gr.Accordion("New collection", open=not index.names()):
        with gr.Row():
            ui["new_name"] = gr.Textbox(label="Name", scale=2)
            ui["chunk_size"] = gr.Number(100, label="Chunk size (words)", precision=0)
            ui["overlap"] = gr.Number(20, label="Overlap (words)", precision=0)
            ui["create"] = gr.Button("Create", variant="primary")
    with gr.Accordion("Add documents", open=False):
        ui["files"] = gr.File(file_count="multiple", file_types=list(supported_types()), type="filepath",
                              label=f"Documents ({', '.join(supported_types())})")
        ui["add"] = gr.Button("Add documents", variant="primary")
    with gr.Accordion("Index a dataset column", open=False):
        with gr.Row():
            ui["source"] = gr.Textbox(label="Dataset", placeholder="sample:shakespeare, hub:<id> or a path", scale=2)
            ui["split"] = gr.Textbox(label="Split", placeholder="default")
            ui["column"] = gr.Textbox(label="Text column")
            ui["max_rows"] = gr.Number(10000, label="Max rows", precision=0)
            ui["add_column"] = gr.Button("Index column", variant="primary")
    with gr.Row():
        ui["query"] = gr.Textbox(label="Search", placeholder="keywords or a question", scale=4,
                                 elem_id="index-query")
        ui["search"] = gr.Button("Search", variant="primary", scale=1, elem_id="index-search")
    with gr.Row():
        ui["mode"] = gr.Radio(list(MODES), value="hybrid", label="Ranking")
        ui["top_k"] = gr.Slider(1, 50, value=5, step=1, label="Top-k")
        ui["min_sim"] = gr.Slider(-1, 1, value=0.25, step=0.05, label="Min. similarity (meaning)")
    ui["notes"] = gr.Markdown(elem_id="index-notes")
    ui["results"] = gr.Dataframe(headers=RESULT_HEADERS, interactive=False, wrap=True, elem_id="index-results")
    ui["api_list"] = gr.JSON(visible=False)
    ui["status_api"] = gr.Button(visible=False)  # carries the /index_status endpoint
    return ui


def build(index: CollectionIndex, browser: Any, config: AppConfig) -> IndexTab:
    """Lay out the Index tab, then wire its events. `browser`: the app's DatasetBrowser."""
    ui = _layout(index)
    deps = IndexDeps(index, browser, config.max_upload_mb * 2**20)
    status = bind(collection_status, index=index)
    shown = [ui["status"], ui["timer"]]
    ui["collection"].change(status, ui["collection"], shown, api_visibility="private")
    ui["timer"].tick(status, ui["collection"], shown, api_visibility="private")
    ui["refresh"].click(lambda v: _choices(index, v), ui["collection"], ui["collection"],
                        api_visibility="private").then(bind(list_collections, index=index), None, ui["api_list"],
                                                       api_name="index_list")
    ui["create"].click(bind(create_collection, index=index), [ui["new_name"], ui["chunk_size"], ui["overlap"]],
                       [ui["collection"], ui["status"]], api_name="index_create")
    ui["delete"].click(bind(delete_collection, index=index), ui["collection"], [ui["collection"], ui["status"]],
                       api_name="index_delete")
    ui["add"].click(bind(add_documents, deps=deps), [ui["collection"], ui["files"]], shown,
                    api_name="index_add_documents", concurrency_limit=1, concurrency_id="index_add")
    ui["add_column"].click(bind(add_dataset_column, deps=deps),
                           [ui["collection"], ui["source"], ui["split"], ui["column"], ui["max_rows"]], shown,
                           api_name="index_add_dataset_column", concurrency_limit=1, concurrency_id="index_add")
    ui["status_api"].click(lambda n: status(n)[0], ui["collection"], ui["status"], api_name="index_status")
    gr.on([ui["search"].click, ui["query"].submit], bind(search_collection, index=index),
          [ui["collection"], ui["query"], ui["mode"], ui["top_k"], ui["min_sim"]], [ui["results"], ui["notes"]],
          api_name="index_search")
    return IndexTab(collection=ui["collection"], status=ui["status"])
