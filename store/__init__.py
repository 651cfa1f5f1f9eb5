"""What the app keeps per owner: generation history and document collections (SQLite WAL + FTS5, numpy vectors),
and the retrieval that answers from them. Never imports gradio."""

from store.collections import CollectionIndex
from store.documents import Document, DocumentError, read_document
from store.embeddings import DEFAULT_EMBEDDER, Embedder, SentenceEmbedder
from store.history import KINDS, Entry, HistoryStore
from store.rag import Source, format_sources, rag_message, retrieve_for_prompt
from store.records import AddResult, CollectionError, CollectionInfo, Passage, SearchResult
from store.search import EmptyQuery

__all__ = ["AddResult", "CollectionError", "CollectionIndex", "CollectionInfo", "DEFAULT_EMBEDDER", "Document",
           "DocumentError", "Embedder", "EmptyQuery", "Entry", "HistoryStore", "KINDS", "Passage", "SearchResult",
           "SentenceEmbedder", "Source", "format_sources", "rag_message", "read_document", "retrieve_for_prompt"]
