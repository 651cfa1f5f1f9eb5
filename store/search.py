"""Hybrid ranking: BM25 (SQLite FTS5) and cosine similarity, merged by reciprocal rank fusion."""

from __future__ import annotations

import re
from dataclasses import dataclass

from errors import InvalidInput

MODES = ("hybrid", "keyword", "semantic")
RRF_K = 60
MAX_TERMS = 32
# Terms found in more than this share of a collection's chunks are left out of the BM25 query: their IDF is small
# (they barely change the ranking) but scoring their long posting lists is most of a query's cost (100k chunks:
# p50 45 -> 9 ms). The rarest term is always kept, so a query of only common words still matches.
MAX_TERM_SHARE = 0.05
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "he", "her", "his", "i",
     "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "she", "so", "than",
     "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "were", "what",
     "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you", "your", "do", "does", "did",
     "how", "can", "could", "should", "about"]
)


class EmptyQuery(InvalidInput):
    """The query has no words to search for."""


@dataclass
class Hit:
    """One ranked result: fused score in 0..1 (1 = first in every list used) and what each list said."""

    id: int
    score: float
    bm25: float | None = None
    similarity: float | None = None


def check_query(query: str, mode: str) -> str:
    if mode not in MODES:
        raise InvalidInput(f"search mode must be one of {MODES}, got {mode!r}")
    query = (query or "").strip()
    if not re.search(r"\w", query):
        raise EmptyQuery("the query is empty: type some words to search for")
    return query


def query_words(query: str) -> list[str]:
    """The query's distinct words, lower-cased, stopwords dropped unless that leaves none."""
    words = list(dict.fromkeys(w.lower() for w in re.findall(r"\w+", query)))
    return ([w for w in words if w not in STOPWORDS] or words)[:MAX_TERMS]


def quote(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def fts_terms(query: str) -> str | None:
    """A safe FTS5 expression: the query's words, quoted (no FTS5 syntax gets through), OR-ed."""
    words = query_words(query)
    return " OR ".join(quote(w) for w in words) if words else None


def prune_common(words: list[str], doc_freq: dict[str, int], total: int) -> list[str]:
    """Words in at most MAX_TERM_SHARE of `total` chunks, or else only the rarest one."""
    kept = [w for w in words if doc_freq.get(w, 0) <= MAX_TERM_SHARE * total]
    return kept or sorted(words, key=lambda w: doc_freq.get(w, 0))[:1]


def fuse(keyword: list[tuple[int, float]], semantic: list[tuple[int, float]], top_k: int,
         k: int = RRF_K) -> list[Hit]:
    """Reciprocal rank fusion of two ranked lists of (id, score), each best first.

    Args:
        keyword: (id, bm25) pairs (SQLite's bm25: lower is better).
        semantic: (id, cosine similarity) pairs.
        top_k: how many fused hits to return.
        k: the RRF constant (60 in the original paper): higher flattens the weight of top ranks.
    """
    lists = [lst for lst in (keyword, semantic) if lst]
    if not lists:
        return []
    hits: dict[int, Hit] = {}
    best = len(lists) / (k + 1)
    for rank, (doc_id, bm25) in enumerate(keyword):
        hit = hits.setdefault(doc_id, Hit(doc_id, 0.0))
        hit.score += 1 / (k + rank + 1)
        hit.bm25 = round(float(bm25), 4)
    for rank, (doc_id, sim) in enumerate(semantic):
        hit = hits.setdefault(doc_id, Hit(doc_id, 0.0))
        hit.score += 1 / (k + rank + 1)
        hit.similarity = round(float(sim), 4)
    ranked = sorted(hits.values(), key=lambda h: (-h.score, h.id))[:top_k]
    for hit in ranked:
        hit.score = round(hit.score / best, 4)
    return ranked


def candidates(top_k: int) -> int:
    """How deep each list is read before fusing."""
    return max(50, 4 * top_k)
