"""Index tab: the caller's collections of documents (uploads or a dataset column), progress, hybrid search.

Collections belong to their owner, like history entries: handlers take the browser id and the request last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from databrowser import DatasetBrowser
from databrowser.sources import SourceRef
from errors import NotFound
from identity import owner_of, session_of
from store import CollectionIndex, DocumentError, EmptyQuery
from store.documents import column_documents, supported_types
from store.search import MODES
from ui.common import PageLoad, bind
from ui.errors import to_gr_error

# keyword: BM25, higher is better (SQLite's own sign is the opposite); meaning: cosine similarity of the embeddings
RESULT_HEADERS = ["rank", "score", "document", "chunk", "text", "keyword (BM25)", "meaning"]
RESULT_WIDTHS = ["6%", "7%", "16%", "6%", "49%", "8%", "8%"]  # the passage gets the room
DOC_HEADERS = ["id", "document", "chunks", "embedded", "added"]
DOC_ROWS = 500
POLL_S = 1.0


@dataclass
class IndexDeps:
    """Everything the Index tab needs."""

    index: CollectionIndex
    browser: DatasetBrowser  # datasets whose column can become documents
    max_upload_bytes: int
    owner: gr.State | None = None  # the page's owner id (app.py), so collections belong to the history's owner


@dataclass
class IndexTab:
    collection: gr.Dropdown
    status: gr.Markdown
    on_load: list[PageLoad]


def _owner(browser_id: str | None, request: gr.Request | None) -> str:
    # the same key as history: the logged-in user, else the browser's id, else the API client's session
    return owner_of(request, browser_id)


def _choices(index: CollectionIndex, owner: str, value: str | None = None) -> gr.Dropdown:
    names = index.names(owner)
    return gr.Dropdown(choices=names, value=value if value in names else (names[0] if names else None))


def collection_choices(value: str | None, browser_id: str | None = None, request: gr.Request = None, *,
                       index: CollectionIndex) -> tuple[gr.Dropdown, gr.Accordion]:
    """The caller's collections (keeping the selection), and the "New collection" form open when there are none."""
    owner = _owner(browser_id, request)
    return _choices(index, owner, value), gr.Accordion(open=not index.names(owner))


def collection_status(name: str, browser_id: str | None = None, request: gr.Request = None, *,
                      index: CollectionIndex) -> tuple[str, gr.Timer]:
    """The collection's counts and progress; the poll timer runs only while it is indexing."""
    if not name:
        return "No collection selected: create one below.", gr.Timer(active=False)
    try:
        info = index.info(_owner(browser_id, request), name)
    except NotFound as exc:
        return str(exc), gr.Timer(active=False)
    return info.describe(), gr.Timer(active=info.indexing)


def status_text(name: str, browser_id: str | None = None, request: gr.Request = None, *,
                index: CollectionIndex) -> str:
    """One line: documents, chunks, embedding progress and settings of one of the caller's collections."""
    return collection_status(name, browser_id, request, index=index)[0]


def list_collections(browser_id: str | None = None, request: gr.Request = None, *,
                     index: CollectionIndex) -> list[dict[str, Any]]:
    """The caller's collections with their counts."""
    return [{"name": i.name, "documents": i.documents, "chunks": i.chunks, "embedded": i.embedded,
             "indexing": i.indexing, "chunk_size": i.chunk_size, "overlap": i.overlap}
            for i in index.list(_owner(browser_id, request))]


def create_collection(name: str, chunk_size: int, overlap: int, browser_id: str | None = None,
                      request: gr.Request = None, *, index: CollectionIndex) -> tuple[gr.Dropdown, str]:
    """Create a collection of the caller's (chunk size and overlap in words)."""
    owner = _owner(browser_id, request)
    try:
        info = index.create(owner, name, int(chunk_size), int(overlap))
    except Exception as exc:
        raise to_gr_error(exc) from None
    return _choices(index, owner, info.name), info.describe()


def delete_collection(name: str, browser_id: str | None = None, request: gr.Request = None, *,
                      index: CollectionIndex) -> tuple[gr.Dropdown, str]:
    """Delete one of the caller's collections and everything in it."""
    owner = _owner(browser_id, request)
    try:
        info = index.delete(owner, name)
    except Exception as exc:
        raise to_gr_error(exc) from None
    return _choices(index, owner), f"Deleted {info.name} ({info.documents:,} documents, {info.chunks:,} chunks)."


def _added(owner: str, name: str, result, index: CollectionIndex) -> tuple[str, gr.Timer]:
    info = index.info(owner, name)
    skipped = f"; {result.skipped} already indexed (same content), skipped" if result.skipped else ""
    return (f"Added {result.added} documents ({result.chunks:,} chunks){skipped}. {info.describe()}",
            gr.Timer(active=info.indexing))


def add_documents(name: str, files: list[str] | None, browser_id: str | None = None, request: gr.Request = None,
                  progress: gr.Progress = gr.Progress(), *, deps: IndexDeps) -> tuple[str, gr.Timer]:
    """Add uploaded .txt/.md/.pdf files; keyword search works at once, meaning search once embedded."""
    if not files:
        raise gr.Error(f"No files: upload one or more of {', '.join(supported_types())}.")
    owner = _owner(browser_id, request)
    paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]
    try:
        result = deps.index.add_files(owner, name, paths, deps.max_upload_bytes,
                                      progress=lambda f, m: progress(f, desc=m))
    except DocumentError as exc:
        raise to_gr_error(exc, "Nothing was added") from None
    except Exception as exc:
        raise to_gr_error(exc) from None
    return _added(owner, name, result, deps.index)


def add_dataset_column(name: str, source: str, split: str, column: str, max_rows: int, browser_id: str | None = None,
                       request: gr.Request = None, progress: gr.Progress = gr.Progress(), *,
                       deps: IndexDeps) -> tuple[str, gr.Timer]:
    """Index one text column of a dataset (sample:<name>, hub:<id>, or a path), one document per row."""
    if not (source or "").strip() or not (column or "").strip():
        raise gr.Error("Give a dataset (e.g. sample:shakespeare) and the name of a text column.")
    owner = _owner(browser_id, request)
    try:
        deps.index.info(owner, name)  # an unknown collection fails before the dataset is opened
        ds = deps.browser.open(session_of(request), SourceRef(source.strip(), split=(split or "").strip()))
        limit = int(max_rows) if max_rows else None
        docs = column_documents(ds, column.strip(), limit)
        total = min(ds.num_rows, limit or ds.num_rows)
        result = deps.index.add_documents(owner, name, docs, progress=lambda f, m: progress(f, desc=m), total=total)
    except Exception as exc:
        raise to_gr_error(exc) from None
    return _added(owner, name, result, deps.index)


def search_collection(name: str, query: str, mode: str, top_k: int, min_similarity: float,
                      browser_id: str | None = None, request: gr.Request = None, *,
                      index: CollectionIndex) -> tuple[list[list[Any]], str]:
    """The best passages of one of the caller's collections; the note says when it is still indexing."""
    try:
        result = index.search(_owner(browser_id, request), name, query, int(top_k), mode or "hybrid",
                              float(min_similarity))
    except EmptyQuery as exc:
        raise gr.Error(f"{exc}.") from None
    except Exception as exc:
        raise to_gr_error(exc) from None
    rows = [[i, round(p.score, 3), p.document, p.chunk, p.text, None if p.bm25 is None else round(-p.bm25, 2),
             None if p.similarity is None else round(p.similarity, 3)] for i, p in enumerate(result.passages, start=1)]
    notes = list(result.notes)
    if not rows:
        notes.append("No passage matched" + (" yet." if result.info.indexing else "."))
    return rows, " ".join(notes)


def list_documents(name: str, contains: str = "", browser_id: str | None = None, request: gr.Request = None, *,
                   index: CollectionIndex) -> list[list[Any]]:
    """The documents of one of the caller's collections (id, name, chunks, embedded chunks, when added)."""
    if not name:
        return []
    try:
        docs = index.documents(_owner(browser_id, request), name, contains or "", limit=DOC_ROWS)
    except Exception as exc:
        raise to_gr_error(exc) from None
    return [[d.id, d.name, d.chunks, d.embedded, d.when] for d in docs]


def documents_shown(name: str, contains: str = "", browser_id: str | None = None, request: gr.Request = None, *,
                    index: CollectionIndex) -> list[list[Any]]:
    """The documents table after the collection changed (empty, without an error, for a name not yet created)."""
    try:
        return list_documents(name, contains, browser_id, request, index=index)
    except gr.Error:
        return []


def delete_document(name: str, document_id: Any, contains: str = "", browser_id: str | None = None,
                    request: gr.Request = None, *, index: CollectionIndex) -> tuple[list[list[Any]], str]:
    """Delete one document (by id) and its chunks from one of the caller's collections; returns the new list."""
    try:
        doc = int(document_id)
    except (TypeError, ValueError):
        raise gr.Error(f"Pick a document first: expected a document id, got {document_id!r}.") from None
    owner = _owner(browser_id, request)
    try:
        gone = index.delete_document(owner, name, doc)
        info = index.info(owner, name)
    except Exception as exc:
        raise to_gr_error(exc) from None
    rows = list_documents(name, contains, browser_id, request, index=index)
    return rows, f"Deleted {gone.name} (document {gone.id}, {gone.chunks:,} chunks). {info.describe()}"


def select_document(evt: gr.SelectData) -> int:
    """The id of the clicked document row."""
    row = evt.row_value or []
    return int(row[0]) if row else gr.skip()


def _layout() -> dict[str, Any]:
    ui: dict[str, Any] = {}
    with gr.Row():  # choices are the caller's own collections, filled in at page load
        ui["collection"] = gr.Dropdown([], value=None, label="Collection", allow_custom_value=True, scale=3,
                                       elem_id="index-collection")
        ui["refresh"] = gr.Button("Refresh", scale=1)
        ui["delete"] = gr.Button("Delete collection", variant="stop", scale=1)
    ui["status"] = gr.Markdown(elem_id="index-status")
    ui["timer"] = gr.Timer(POLL_S, active=False)
    with gr.Accordion("New collection", open=True) as ui["new"], gr.Row():
        ui["new_name"] = gr.Textbox(label="Name", scale=2)
        ui["chunk_size"] = gr.Number(100, label="Chunk size (words)", precision=0)
        ui["overlap"] = gr.Number(20, label="Overlap (words)", precision=0)
        ui["create"] = gr.Button("Create", variant="primary")
    with gr.Accordion("Add documents", open=False):
        ui["files"] = gr.File(file_count="multiple", file_types=list(supported_types()), type="filepath",
                              label=f"Documents ({', '.join(supported_types())})")
        ui["add"] = gr.Button("Add documents", variant="primary")
    with gr.Accordion("Index a dataset column", open=False), gr.Row():
        ui["source"] = gr.Textbox(label="Dataset", placeholder="sample:shakespeare, hub:<id> or a path", scale=2)
        ui["split"] = gr.Textbox("", label="Split", placeholder="default")
        ui["column"] = gr.Textbox(label="Text column")
        ui["max_rows"] = gr.Number(10000, label="Max rows", precision=0)
        ui["add_column"] = gr.Button("Index column", variant="primary")
    with gr.Accordion("Documents in this collection", open=False):
        with gr.Row():
            ui["doc_filter"] = gr.Textbox("", label="Name contains", scale=3)
            ui["doc_list"] = gr.Button("List documents", scale=1, elem_id="index-doc-list")
        ui["docs"] = gr.Dataframe(headers=DOC_HEADERS, interactive=False, wrap=True, elem_id="index-documents")
        with gr.Row():
            ui["doc_id"] = gr.Number(label="Document id (click a row)", precision=0, elem_id="index-doc-id")
            ui["doc_delete"] = gr.Button("Delete document", variant="stop", elem_id="index-doc-delete")
    with gr.Row():
        ui["query"] = gr.Textbox(label="Search", placeholder="keywords or a question", scale=4,
                                 elem_id="index-query")
        ui["search"] = gr.Button("Search", variant="primary", scale=1, elem_id="index-search")
    with gr.Row():
        ui["mode"] = gr.Radio(list(MODES), value="hybrid", label="Ranking")
        ui["top_k"] = gr.Slider(1, 50, value=5, step=1, label="Top-k")
        ui["min_sim"] = gr.Slider(-1, 1, value=0.25, step=0.05, label="Min. similarity (meaning)")
    ui["notes"] = gr.Markdown(elem_id="index-notes")
    ui["results"] = gr.Dataframe(headers=RESULT_HEADERS, interactive=False, wrap=True, column_widths=RESULT_WIDTHS,
                                  elem_id="index-results")
    ui["api_list"] = gr.JSON(visible=False)
    ui["status_api"] = gr.Button(visible=False)  # carries the /index_status endpoint
    return ui


def build(deps: IndexDeps) -> IndexTab:
    """Lay out the Index tab, then wire its events."""
    ui = _layout()
    index = deps.index
    owner = deps.owner if deps.owner is not None else gr.State("")
    status, choices = bind(collection_status, index=index), bind(collection_choices, index=index)
    shown, docs = [ui["status"], ui["timer"]], bind(documents_shown, index=index)
    ui["collection"].change(status, [ui["collection"], owner], shown, api_visibility="private").then(
        docs, [ui["collection"], ui["doc_filter"], owner], ui["docs"], api_visibility="private")
    ui["collection"].focus(choices, [ui["collection"], owner], [ui["collection"], ui["new"]], api_visibility="private")
    ui["timer"].tick(status, [ui["collection"], owner], shown, api_visibility="private")
    ui["refresh"].click(choices, [ui["collection"], owner], [ui["collection"], ui["new"]],
                        api_visibility="private").then(bind(list_collections, index=index), owner, ui["api_list"],
                                                       api_name="index_list")
    ui["create"].click(bind(create_collection, index=index), [ui["new_name"], ui["chunk_size"], ui["overlap"], owner],
                       [ui["collection"], ui["status"]], api_name="index_create").success(
        lambda: gr.Accordion(open=False), None, ui["new"], api_visibility="private")  # done: out of the way
    ui["delete"].click(bind(delete_collection, index=index), [ui["collection"], owner],
                       [ui["collection"], ui["status"]], api_name="index_delete")
    ui["add"].click(bind(add_documents, deps=deps), [ui["collection"], ui["files"], owner], shown,
                    api_name="index_add_documents", concurrency_limit=1, concurrency_id="index_add")
    ui["add_column"].click(bind(add_dataset_column, deps=deps),
                           [ui["collection"], ui["source"], ui["split"], ui["column"], ui["max_rows"], owner], shown,
                           api_name="index_add_dataset_column", concurrency_limit=1, concurrency_id="index_add")
    ui["status_api"].click(bind(status_text, index=index), [ui["collection"], owner], ui["status"],
                           api_name="index_status")
    gr.on([ui["search"].click, ui["query"].submit], bind(search_collection, index=index),
          [ui["collection"], ui["query"], ui["mode"], ui["top_k"], ui["min_sim"], owner],
          [ui["results"], ui["notes"]], api_name="index_search")
    _wire_documents(ui, owner, index)
    return IndexTab(collection=ui["collection"], status=ui["status"],
                    on_load=[PageLoad(choices, [ui["collection"], owner], [ui["collection"], ui["new"]])])


def _wire_documents(ui: dict[str, Any], owner: gr.State, index: CollectionIndex) -> None:
    gr.on([ui["doc_list"].click, ui["doc_filter"].submit], bind(list_documents, index=index),
          [ui["collection"], ui["doc_filter"], owner], ui["docs"], api_name="index_documents")
    ui["docs"].select(select_document, None, ui["doc_id"], api_visibility="private")
    ui["doc_delete"].click(bind(delete_document, index=index),
                           [ui["collection"], ui["doc_id"], ui["doc_filter"], owner], [ui["docs"], ui["status"]],
                           api_name="index_delete_document")
