"""Collections belong to their owner: another owner can't see, search, add to, delete or answer from them."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import gradio as gr
import pytest

from store import CollectionError, CollectionIndex, Document
from store.schema import COLLECTIONS_MIGRATIONS, collection_fts_sql
from ui import chat_tab, index_tab

ALICE, BOB = "user:alice", "user:bob"
KETTLE = Document("kettle.md", "The blue kettle boils one litre of water in three minutes.")


def request(user: str = "", session: str = "s-1") -> SimpleNamespace:
    """What the handlers read from a gr.Request: the logged-in user and the session."""
    return SimpleNamespace(username=user or None, session_hash=session)


def test_another_owner_cannot_reach_a_collection(index):
    index.create(ALICE, "notes", 40, 5)
    index.add_documents(ALICE, "notes", [KETTLE])
    assert index.worker.wait_idle(30)
    assert index.names(BOB) == [] and index.list(BOB) == [] and index.names(ALICE) == ["notes"]
    doc_id = index.documents(ALICE, "notes")[0].id
    refused = "no collection named 'notes'; yours: none yet"  # the same answer as for a name nobody uses
    for attempt in (lambda: index.info(BOB, "notes"), lambda: index.search(BOB, "notes", "kettle"),
                    lambda: index.add_documents(BOB, "notes", [Document("x.txt", "intruder text")]),
                    lambda: index.delete(BOB, "notes"), lambda: index.documents(BOB, "notes"),
                    lambda: index.delete_document(BOB, "notes", doc_id),
                    lambda: index.retrieve_for_prompt(BOB, "notes", "kettle")):
        with pytest.raises(CollectionError, match=refused):
            attempt()
    info = index.info(ALICE, "notes")
    assert (info.documents, info.chunks, info.embedded) == (1, 1, 1)
    with pytest.raises(ValueError, match="owner must be a non-empty key"):
        index.names("")


def test_two_owners_may_use_the_same_name(index):
    index.create(ALICE, "notes", 40, 5)
    index.create(BOB, "notes", 100, 0)  # other settings: no "exists" error, so nothing leaks about Alice's
    index.add_documents(ALICE, "notes", [KETTLE])
    index.add_documents(BOB, "notes", [Document("ships.txt", "The lighthouse keeper watched the ships pass.")])
    assert index.worker.wait_idle(30)
    assert [p.document for p in index.search(BOB, "notes", "kettle water", mode="semantic",
                                             min_similarity=-1).passages] == ["ships.txt"]
    assert index.search(BOB, "notes", "kettle", mode="keyword").passages == []
    index.delete(BOB, "notes")
    assert index.names(BOB) == [] and index.info(ALICE, "notes").documents == 1
    assert index.search(ALICE, "notes", "kettle").passages[0].document == "kettle.md"


def test_index_tab_handlers_act_for_the_caller_only(index):
    alice, bob = request("alice"), request("bob")
    index_tab.create_collection("notes", 40, 5, None, alice, index=index)
    index.add_documents(ALICE, "notes", [KETTLE])
    assert index.worker.wait_idle(30)
    assert [c["name"] for c in index_tab.list_collections(None, alice, index=index)] == ["notes"]
    assert index_tab.list_collections(None, bob, index=index) == []
    dropdown, accordion = index_tab.collection_choices(None, None, bob, index=index)
    assert dropdown.choices == [] and accordion.open is True
    doc_id = index_tab.list_documents("notes", "", None, alice, index=index)[0][0]
    for handler, args in [(index_tab.search_collection, ("notes", "kettle", "hybrid", 3, 0.25)),
                          (index_tab.delete_collection, ("notes",)), (index_tab.list_documents, ("notes", "")),
                          (index_tab.delete_document, ("notes", doc_id, ""))]:
        with pytest.raises(gr.Error, match="no collection named 'notes'"):
            handler(*args, None, bob, index=index)
    assert "no collection named 'notes'" in index_tab.status_text("notes", None, bob, index=index)
    rows, _ = index_tab.search_collection("notes", "kettle", "hybrid", 3, 0.25, None, alice, index=index)
    assert rows[0][2] == "kettle.md"


def test_upload_into_another_owners_collection_is_refused(index, tmp_path):
    doc = tmp_path / "intruder.txt"
    doc.write_text("text from someone else")
    deps = index_tab.IndexDeps(index, browser=None, max_upload_bytes=2**20)
    index.create(ALICE, "notes")
    with pytest.raises(gr.Error, match="no collection named 'notes'"):
        index_tab.add_documents("notes", [str(doc)], None, request("bob"), lambda *a, **k: None, deps=deps)
    with pytest.raises(gr.Error, match="no collection named 'notes'"):
        index_tab.add_dataset_column("notes", "sample:x", "", "text", 10, None, request("bob"),
                                     lambda *a, **k: None, deps=deps)
    assert index.info(ALICE, "notes").documents == 0


def test_anonymous_browsers_are_owners_too(index):
    first, second = "0123456789abcdef", "fedcba9876543210"
    session = request(session="same-session")
    index_tab.create_collection("mine", 50, 10, first, session, index=index)
    assert index_tab.list_collections(first, session, index=index)[0]["name"] == "mine"
    assert index_tab.list_collections(second, session, index=index) == []  # another browser's id
    assert index_tab.list_collections("", session, index=index) == []  # no id: this API session's own
    assert index.names("browser:" + first) == ["mine"]


def test_chat_answers_only_from_the_askers_collections(index):
    index.create(ALICE, "manuals", 40, 5)
    index.add_documents(ALICE, "manuals", [KETTLE])
    assert index.worker.wait_idle(30)
    deps = chat_tab.ChatDeps(engine=None, registry=None, max_new_tokens=16, index=index)
    question, notes = chat_tab.retrieve("How long does the kettle take?", "manuals", deps, ALICE)
    assert "boils one litre of water in three minutes" in question and "kettle.md" in notes[0]["content"]
    with pytest.raises(gr.Error, match="no collection named 'manuals'"):
        chat_tab.retrieve("How long does the kettle take?", "manuals", deps, BOB)
    assert chat_tab.collection_choices("", request("alice"), index=index).choices == [("", ""),
                                                                                      ("manuals", "manuals")]
    assert chat_tab.collection_choices("", request("bob"), index=index).choices == [("", "")]


def test_collections_from_before_owners_are_kept_as_local(tmp_path, embedder):
    """A version-1 database (no owners) migrates in place: rows, keyword index and vectors survive the rebuild."""
    folder = tmp_path / "old"
    folder.mkdir()
    conn = sqlite3.connect(folder / "collections.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(f"BEGIN;\n{COLLECTIONS_MIGRATIONS[0]}\nPRAGMA user_version=1;\nCOMMIT;")
    conn.execute("INSERT INTO collections (id, name, chunk_size, overlap, created, n_documents, n_chunks) "
                 "VALUES (7, 'legacy', 50, 10, 0, 1, 1)")
    for statement in collection_fts_sql(7):
        conn.execute(statement)
    conn.execute("INSERT INTO documents (id, collection_id, name, content_hash, n_chunks, created) "
                 "VALUES (1, 7, 'old.txt', 'h', 1, 0)")
    conn.execute("INSERT INTO chunks (collection_id, document_id, idx, text) VALUES (7, 1, 0, 'an old zeppelin')")
    conn.close()
    ix = CollectionIndex(folder, embedder)
    try:
        assert ix.db.integrity() == "ok" and ix.names("local") == ["legacy"] and ix.names(ALICE) == []
        assert ix.search("local", "legacy", "zeppelin", mode="keyword").passages[0].text == "an old zeppelin"
        assert ix.worker.wait_idle(30) and ix.info("local", "legacy").embedded == 1
        assert ix.create(ALICE, "legacy").id == 8  # ids are not reused after the rebuild
        with ix.db.transaction() as writer:  # the migration turned them off for the rebuild, and back on
            assert writer.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert ix.db.read().execute("PRAGMA user_version").fetchone()[0] == len(COLLECTIONS_MIGRATIONS)
    finally:
        ix.close()
