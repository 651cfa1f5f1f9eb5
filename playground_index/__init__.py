"""Generation history and the search index (SQLite WAL + FTS5, numpy vectors). Never imports gradio."""

from playground_index.corpus import CollectionIndex
from playground_index.records import AddResult, CollectionError, CollectionInfo, Passage, SearchResult
from playground_index.documents import Document, DocumentError, read_document
from playground_index.embeddings import DEFAULT_EMBEDDER, Embedder, SentenceEmbedder
from playground_index.history import KINDS, Entry, HistoryStore
from playground_index.owners import new_browser_id, owner_of
from playground_index.rag import Source, format_sources, rag_message, retrieve_for_prompt
from playground_index.search import EmptyQuery

__all__ = ["AddResult", "CollectionError", "CollectionIndex", "CollectionInfo", "DEFAULT_EMBEDDER", "Document",
           "DocumentError", "Embedder", "EmptyQuery", "Entry", "HistoryStore", "KINDS", "Passage", "SearchResult",
           "SentenceEmbedder", "Source", "format_sources", "new_browser_id", "owner_of", "rag_message",
           "retrieve_for_prompt"]
