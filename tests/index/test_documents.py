"""Listing the documents of a collection and deleting one: its chunks leave keyword and meaning search at once."""

from __future__ import annotations

import sqlite3

import pytest

from store import CollectionError, CollectionIndex, Document

OWNER = "user:alice"
DOCS = [Document("kettle.md", "The blue kettle boils one litre of water in three minutes. " * 5),
        Document("ships.txt", "The lighthouse keeper watched the ships pass the rocky island every night."),
        Document("volcano.txt", "A volcano erupts when molten magma rises through the crust to the surface.")]


def fill(ix: CollectionIndex) -> dict[str, int]:
    ix.create(OWNER, "docs", chunk_size=20, overlap=5)
    ix.add_documents(OWNER, "docs", DOCS)
    return {d.name: d.id for d in ix.documents(OWNER, "docs")}


def fts_rows(ix: CollectionIndex, word: str) -> int:
    conn = sqlite3.connect(ix.db.path)
    try:
        conn.execute("INSERT INTO fts_c1 (fts_c1, rank) VALUES ('integrity-check', 1)")  # raises if out of step
        return conn.execute("SELECT count(*) FROM fts_c1 WHERE fts_c1 MATCH ?", (word,)).fetchone()[0]
    finally:
        conn.close()


def test_documents_are_listed_with_their_chunks(index):
    ids = fill(index)
    assert index.worker.wait_idle(30)
    docs = index.documents(OWNER, "docs")
    assert [(d.name, d.chunks, d.embedded) for d in docs] == [("kettle.md", 4, 4), ("ships.txt", 1, 1),
                                                               ("volcano.txt", 1, 1)]
    assert [d.name for d in index.documents(OWNER, "docs", contains="S.T")] == ["ships.txt"]  # case-insensitive
    assert index.documents(OWNER, "docs", contains="%") == []  # LIKE wildcards are plain characters
    assert [d.id for d in index.documents(OWNER, "docs", limit=1, offset=1)] == [ids["ships.txt"]]
    assert docs[0].when.endswith("UTC")


def test_delete_document_removes_it_from_keyword_and_meaning_search(index):
    ids = fill(index)
    assert index.worker.wait_idle(30)
    assert index.search(OWNER, "docs", "kettle litre", mode="semantic").passages[0].document == "kettle.md"
    gone = index.delete_document(OWNER, "docs", ids["kettle.md"])
    assert (gone.name, gone.chunks, gone.embedded) == ("kettle.md", 4, 4)
    info = index.info(OWNER, "docs")
    assert (info.documents, info.chunks, info.embedded, info.indexing) == (2, 2, 2, False)
    assert fts_rows(index, "kettle") == 0 and fts_rows(index, "lighthouse") == 1
    assert index.search(OWNER, "docs", "kettle litre", mode="keyword").passages == []
    semantic = index.search(OWNER, "docs", "kettle litre", mode="semantic", min_similarity=-1, top_k=10)
    assert sorted(p.document for p in semantic.passages) == ["ships.txt", "volcano.txt"]  # none left out unseen
    assert [d.name for d in index.documents(OWNER, "docs")] == ["ships.txt", "volcano.txt"]
    with pytest.raises(CollectionError, match=f"no document {ids['kettle.md']} in collection 'docs'"):
        index.delete_document(OWNER, "docs", ids["kettle.md"])


def test_the_same_content_can_be_added_again_after_delete(index):
    ids = fill(index)
    index.delete_document(OWNER, "docs", ids["ships.txt"])
    again = index.add_documents(OWNER, "docs", [Document("ships-again.txt", DOCS[1].text)])
    assert (again.added, again.skipped, again.chunks) == (1, 0, 1)  # its content hash left with it
    assert index.worker.wait_idle(30)
    hit = index.search(OWNER, "docs", "lighthouse keeper", top_k=1).passages[0]
    assert hit.document == "ships-again.txt" and hit.similarity is not None and hit.bm25 is not None
    info = index.info(OWNER, "docs")
    assert (info.documents, info.chunks, info.embedded) == (3, 6, 6)


def test_delete_before_embedding_keeps_the_counts_right(tmp_path, embedder):
    ix = CollectionIndex(tmp_path / "slow", embedder, start_worker=False)
    try:
        ids = fill(ix)
        rows = ix.pending(3)  # embed only the first three chunks (all of the kettle's first chunks)
        ix.store_vectors([r[0] for r in rows], embedder.encode([r[1] for r in rows]))
        gone = ix.delete_document(OWNER, "docs", ids["kettle.md"])
        assert (gone.chunks, gone.embedded) == (4, 3)
        ix.store_vectors([r[0] for r in rows], embedder.encode([r[1] for r in rows]))  # a late batch: ignored
        while ix.worker.run_once():
            pass
        info = ix.info(OWNER, "docs")
        assert (info.documents, info.chunks, info.embedded) == (2, 2, 2)
        assert ix.search(OWNER, "docs", "kettle", mode="semantic", min_similarity=-1, top_k=5).passages[0].document \
            != "kettle.md"
    finally:
        ix.close()


def test_an_other_collections_document_is_not_deleted(index):
    ids = fill(index)
    index.create(OWNER, "other")
    with pytest.raises(CollectionError, match="no document"):
        index.delete_document(OWNER, "other", ids["ships.txt"])
    assert index.info(OWNER, "docs").documents == 3


def test_meaning_search_forgets_a_deleted_document_with_the_real_minilm(tmp_path, minilm):
    ix = CollectionIndex(tmp_path / "real", minilm)
    try:
        ix.create(OWNER, "known", chunk_size=50, overlap=10)
        ix.add_documents(OWNER, "known", [
            Document("photosynthesis.txt", "Photosynthesis is the process by which plants convert sunlight, water "
                                           "and carbon dioxide into glucose and oxygen inside their chloroplasts."),
            Document("dogs.txt", "Dogs are loyal pets that enjoy playing fetch and going on long walks."),
            Document("volcano.txt", "A volcano erupts when molten rock called magma rises through the crust.")])
        assert ix.worker.wait_idle(60)
        query = "how do green leaves make food from light"  # no word in common: only meaning finds it
        first = ix.search(OWNER, "known", query, mode="semantic", min_similarity=0.1, top_k=3)
        assert first.passages[0].document == "photosynthesis.txt"
        doc = next(d for d in ix.documents(OWNER, "known") if d.name == "photosynthesis.txt")
        ix.delete_document(OWNER, "known", doc.id)
        after = ix.search(OWNER, "known", query, mode="semantic", min_similarity=-1, top_k=3)
        assert [p.document for p in after.passages if p.document == "photosynthesis.txt"] == []
        assert len(after.passages) == 2
    finally:
        ix.close()
