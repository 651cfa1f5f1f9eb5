"""Retrieval for chat: the best passages of a collection, fitted into a character budget, with their sources."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from errors import InvalidInput


@dataclass(frozen=True)
class Source:
    """Where a passage in the context came from."""

    collection: str
    document: str
    chunk: int
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def retrieve_for_prompt(index, owner: str, collection: str, query: str, top_k: int = 4,
                        max_chars: int = 2000) -> tuple[str, list[Source]]:
    """Context text for a prompt and the sources it holds.

    Args:
        index: a store.CollectionIndex.
        owner: whose collection (the asker's owner key): another owner's collection is never searched.
        collection: the collection to search.
        query: the user's message.
        top_k: passages to consider, best first.
        max_chars: budget for the whole context; passages that do not fit are left out (a first passage longer
            than the budget is cut, so the context is never empty when something matched).

    Returns:
        (context_text, sources): passages numbered [1], [2], ... each headed by its document; sources in the
        same order. ("", []) when nothing matched.
    """
    if max_chars < 100:
        raise InvalidInput(f"max_chars must be at least 100, got {max_chars}")
    result = index.search(owner, collection, query, top_k=top_k)
    parts: list[str] = []
    sources: list[Source] = []
    used = 0
    for p in result.passages:
        block = f"[{len(parts) + 1}] {p.document} (chunk {p.chunk})\n{p.text.strip()}"
        room = max_chars - used - (2 if parts else 0)
        if len(block) > room:
            if parts or room < 100:
                continue  # a shorter later passage may still fit
            block = block[:room - 1].rstrip() + "…"
        parts.append(block)
        sources.append(Source(p.collection, p.document, p.chunk, p.score))
        used += len(block) + (2 if len(parts) > 1 else 0)
    return "\n\n".join(parts), sources


def rag_message(context: str, question: str) -> str:
    """The user message that carries the retrieved context (unchanged question when there is none)."""
    if not context:
        return question
    return ("Answer the question using the passages below; cite them as [1], [2]. If they do not contain the "
            f"answer, say so.\n\n{context}\n\nQuestion: {question}")


def format_sources(sources: list[Source]) -> str:
    """Markdown list of sources, shown under a reply (in a message titled "Sources": no heading of its own)."""
    return "\n".join(f"{i}. **{s.document}** · chunk {s.chunk} · {s.collection} · score {s.score:.2f}"
                     for i, s in enumerate(sources, start=1))
