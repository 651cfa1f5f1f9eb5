"""Ranking on a small known corpus: the right document comes first by keyword, by meaning, and fused."""

from __future__ import annotations

import pytest

from store import CollectionIndex, Document, EmptyQuery
from store.chunking import chunk_text, content_hash
from store.search import fts_terms, fuse

OWNER = "user:alice"

CORPUS = {
    "eiffel.txt": "The Eiffel Tower is a wrought-iron lattice tower in Paris, France, finished in 1889.",
    "photosynthesis.txt": "Photosynthesis is the process by which plants convert sunlight, water and carbon dioxide "
                          "into glucose and oxygen inside their chloroplasts.",
    "markets.txt": "Stock markets fell sharply today as investors worried about rising interest rates.",
    "dogs.txt": "Dogs are loyal pets that enjoy playing fetch and going on long walks with their owners.",
    "python.txt": "Python is a programming language known for readable syntax and a large standard library.",
    "volcano.txt": "A volcano erupts when molten rock called magma rises through the crust to the surface.",
}


def _fill(ix: CollectionIndex) -> None:
    ix.create(OWNER, "known", chunk_size=50, overlap=10)
    ix.add_documents(OWNER, "known", [Document(n, t) for n, t in CORPUS.items()])
    assert ix.worker.wait_idle(60)


def test_keyword_finds_the_right_document_first(index):
    _fill(index)
    for query, expected in [("Eiffel tower", "eiffel.txt"), ("interest rates investors", "markets.txt"),
                            ("magma crust", "volcano.txt"), ("programming syntax", "python.txt")]:
        result = index.search(OWNER, "known", query, top_k=3, mode="keyword")
        assert result.passages[0].document == expected, (query, result.passages)
        assert result.passages[0].bm25 is not None and result.passages[0].similarity is None


def test_keyword_stems_and_ignores_stopwords(index):
    _fill(index)
    result = index.search(OWNER, "known", "what about the dog walking?", top_k=2, mode="keyword")
    assert result.passages[0].document == "dogs.txt"  # porter: dog ~ dogs, walking ~ walks


def test_meaning_with_the_real_minilm(tmp_path, minilm):
    texts = ["how do green leaves make food from light", "a famous landmark", "x", "a much longer sentence " * 40]
    # the lock-free query path computes what sentence-transformers' encode does (text by text: int8 activations
    # are scaled per batch, so a text's vector moves a little with its batch companions)
    alone = [minilm.model().encode([t], normalize_embeddings=True)[0] for t in texts]
    same = [float(minilm.encode([t])[0] @ v) for t, v in zip(texts, alone, strict=True)]
    assert same == pytest.approx([1.0] * 4, abs=1e-4)
    batch = minilm.encode(texts + ["padding so this goes through sentence-transformers' batched encode"])[:4]
    assert (minilm.encode(texts) * batch).sum(axis=1) == pytest.approx([1.0] * 4, abs=0.1 if minilm.int8 else 1e-4)
    ix = CollectionIndex(tmp_path / "real", minilm)
    try:
        _fill(ix)
        # no word in common with the right document: only meaning can find it
        for query, expected in [("how do green leaves make food from light", "photosynthesis.txt"),
                                ("a famous landmark in the French capital", "eiffel.txt"),
                                ("my puppy likes to chase a ball", "dogs.txt")]:
            result = ix.search(OWNER, "known", query, top_k=3, mode="semantic", min_similarity=0.1)
            assert result.passages[0].document == expected, (query, result.passages)
            assert result.passages[0].similarity > 0.3
        hybrid = ix.search(OWNER, "known", "hot lava from a mountain", top_k=3)
        assert hybrid.passages[0].document == "volcano.txt"
        unrelated = ix.search(OWNER, "known", "quarterly tax accounting rules", top_k=3, mode="semantic",
                              min_similarity=0.6)
        assert unrelated.passages == []  # the threshold drops weak matches
    finally:
        ix.close()


def test_hybrid_fuses_both_lists(index):
    _fill(index)
    result = index.search(OWNER, "known", "Paris tower", top_k=6)
    assert result.passages[0].document == "eiffel.txt"
    assert result.passages[0].bm25 is not None and result.passages[0].similarity is not None
    assert result.passages[0].score == pytest.approx(1.0)  # first in both lists
    assert [p.score for p in result.passages] == sorted((p.score for p in result.passages), reverse=True)


def test_rrf_orders_by_reciprocal_ranks():
    hits = fuse([(1, -3.0), (2, -2.0)], [(2, 0.9), (3, 0.8)], top_k=3)
    assert [h.id for h in hits] == [2, 1, 3]
    assert hits[0].score == pytest.approx((1 / 62 + 1 / 61) / (2 / 61), abs=1e-4)


@pytest.mark.parametrize("query", ['"tower', "NEAR(a b)", "a* OR -b", "tower AND", "col:umn ^x",
                                   "'); DROP TABLE chunks;--"])
def test_hostile_queries_are_plain_words(index, query):
    _fill(index)
    index.search(OWNER, "known", query, top_k=3)  # no FTS5 syntax error
    assert fts_terms('say "hi"') == '"say" OR "hi"'


@pytest.mark.parametrize("query", ["", "   ", "?!."])
def test_empty_queries_are_refused(index, query):
    _fill(index)
    with pytest.raises(EmptyQuery, match="empty"):
        index.search(OWNER, "known", query)


def test_chunks_overlap_and_keep_text():
    words = [f"w{i}" for i in range(25)]
    chunks = chunk_text("  ".join(words), chunk_size=10, overlap=3)
    assert chunks[0].split() == words[:10] and chunks[1].split()[:3] == words[7:10]
    assert chunks[-1].split()[-1] == "w24" and "  " in chunks[0]
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", 10, 10)
    assert content_hash("a  b\nc") == content_hash("a b c")


def test_common_words_are_pruned_but_never_all():
    from store.search import prune_common

    df = {"thou": 900, "lord": 700, "gonzalo": 12, "isle": 40}
    assert prune_common(["thou", "gonzalo", "lord", "isle"], df, 1000) == ["gonzalo", "isle"]
    assert prune_common(["thou", "lord"], df, 1000) == ["lord"]
