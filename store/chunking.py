"""Split text into overlapping chunks of words, keeping the original spacing inside each chunk."""

from __future__ import annotations

import hashlib
import re

from errors import InvalidInput

_WORD = re.compile(r"\S+")
MAX_CHUNK_WORDS = 2000


def check_chunking(chunk_size: int, overlap: int) -> None:
    """Raise ValueError unless 1 <= chunk_size <= MAX_CHUNK_WORDS and 0 <= overlap < chunk_size."""
    if not 1 <= chunk_size <= MAX_CHUNK_WORDS:
        raise InvalidInput(f"chunk size must be between 1 and {MAX_CHUNK_WORDS} words, got {chunk_size}")
    if not 0 <= overlap < chunk_size:
        raise InvalidInput(f"overlap must be at least 0 and smaller than the chunk size ({chunk_size}), got {overlap}")


def chunk_text(text: str, chunk_size: int = 100, overlap: int = 20) -> list[str]:
    """Chunks of `chunk_size` words, each starting `chunk_size - overlap` words after the previous one.

    Args:
        text: any text; whitespace-only text gives no chunks.
        chunk_size: words per chunk.
        overlap: words shared by consecutive chunks.

    Returns:
        The chunks, in order; the last one may be shorter.
    """
    check_chunking(chunk_size, overlap)
    spans = [m.span() for m in _WORD.finditer(text)]
    if not spans:
        return []
    step = chunk_size - overlap
    chunks = []
    for start in range(0, len(spans), step):
        end = min(start + chunk_size, len(spans))
        chunks.append(text[spans[start][0]:spans[end - 1][1]])
        if end == len(spans):
            break
    return chunks


def content_hash(text: str) -> str:
    """The identity of a document's content: the same words give the same hash (spacing ignored)."""
    normalized = " ".join(text.split())
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()
