"""Plain records the collection index returns (no behaviour beyond describing themselves)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from errors import NotFound


class CollectionError(NotFound):
    """An unknown, duplicate or badly named collection."""


@dataclass(frozen=True)
class CollectionInfo:
    id: int
    name: str
    chunk_size: int
    overlap: int
    documents: int
    chunks: int
    embedded: int
    adding: bool = False
    error: str = ""

    @property
    def indexing(self) -> bool:
        return self.adding or self.embedded < self.chunks

    def describe(self) -> str:
        state = (f"indexing: {self.embedded:,}/{self.chunks:,} chunks embedded" if self.indexing
                 else f"ready: {self.chunks:,} chunks")
        extra = f" · embedding error: {self.error}" if self.error else ""
        return (f"{self.name} · {self.documents:,} documents · {state} · chunks of {self.chunk_size} words, "
                f"overlap {self.overlap}{extra}")


@dataclass(frozen=True)
class DocumentInfo:
    """One document of a collection: its id (for deleting it), name, and how many of its chunks are embedded."""

    id: int
    name: str
    chunks: int
    embedded: int
    created: float

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.created, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class AddResult:
    added: int
    skipped: int  # already in the collection (same content)
    chunks: int


@dataclass(frozen=True)
class Passage:
    """A ranked chunk with where it comes from."""

    collection: str
    document: str
    chunk: int
    text: str
    score: float
    bm25: float | None
    similarity: float | None


@dataclass
class SearchResult:
    passages: list[Passage]
    info: CollectionInfo
    notes: list[str] = field(default_factory=list)
