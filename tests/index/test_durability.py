"""SIGKILL during ingest: the store reopens intact, counts agree, and indexing resumes where it stopped."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from fake_embedder import HashEmbedder

from store import CollectionIndex

CHILD = Path(__file__).with_name("ingest_child.py")
OWNER = "local"  # the owner ingest_child.py writes as


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        q = lambda sql: conn.execute(sql).fetchone()[0]
        assert q("PRAGMA integrity_check") == "ok"
        conn.execute("INSERT INTO fts_c1 (fts_c1, rank) VALUES ('integrity-check', 1)")  # raises if broken
        return {
            "chunks": q("SELECT count(*) FROM chunks"),
            "fts": q("SELECT count(*) FROM fts_c1_docsize"),
            "fts_matches": q("SELECT count(*) FROM fts_c1 WHERE fts_c1 MATCH 'common'"),
            "vectors": q("SELECT count(*) FROM chunks WHERE vec IS NOT NULL"),
            "documents": q("SELECT count(*) FROM documents"),
            "doc_chunks": q("SELECT coalesce(sum(n_chunks), 0) FROM documents"),
            "n_documents": q("SELECT n_documents FROM collections"),
            "n_chunks": q("SELECT n_chunks FROM collections"),
            "n_embedded": q("SELECT n_embedded FROM collections"),
        }
    finally:
        conn.close()


def kill_during_ingest(folder: Path, min_vectors: int, extra_wait: float) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(CHILD), str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        db = folder / "collections.db"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, "the child exited early"
            if db.exists() and counts(db)["vectors"] >= min_vectors:
                break
        time.sleep(extra_wait)
        os.kill(child.pid, signal.SIGKILL)  # mid-transaction, most likely: adds and embeds never stop
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL


def check_consistent(c: dict[str, int]) -> None:
    assert c["chunks"] == c["fts"] == c["fts_matches"] == c["n_chunks"] == c["doc_chunks"], c
    assert c["documents"] == c["n_documents"], c
    assert c["vectors"] == c["n_embedded"] <= c["chunks"], c


def test_sigkill_during_ingest_loses_at_most_the_batch_in_flight(tmp_path):
    folder = tmp_path / "store"
    kill_during_ingest(folder, min_vectors=50, extra_wait=0.13)
    first = counts(folder / "collections.db")
    check_consistent(first)
    assert first["chunks"] > 0 and first["vectors"] > 0

    ix = CollectionIndex(folder, HashEmbedder(), batch_size=256)  # restart: the worker resumes
    try:
        assert ix.db.integrity() == "ok"
        assert ix.worker.wait_idle(60)
        info = ix.info(OWNER, "crash")
        assert info.embedded == info.chunks == first["chunks"] and not info.indexing
        hits = ix.search(OWNER, "crash", "word77 common", top_k=3)
        assert hits.passages and "word77" in hits.passages[0].text
    finally:
        ix.close()
    again = counts(folder / "collections.db")
    check_consistent(again)
    assert again["vectors"] == again["chunks"]

    kill_during_ingest(folder, min_vectors=again["vectors"] + 30, extra_wait=0.07)  # and once more, elsewhere
    check_consistent(counts(folder / "collections.db"))
