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


class RowWrittenDuringEmptyLook:
    """A table that finds nothing on its first look, and a row is written (and the worker woken) during that look."""

    def __init__(self) -> None:
        self.rows: dict[int, str] = {}
        self.vectors: dict[int, object] = {}
        self.looks = 0
        self.worker = None

    def pending(self, limit: int) -> list[tuple[int, str]]:
        self.looks += 1
        found = [(i, t) for i, t in self.rows.items() if i not in self.vectors][:limit]
        if self.looks == 1:
            self.rows[1] = "written while the worker looked"
            self.worker.wake()
        return found

    def store_vectors(self, ids: list[int], vectors) -> int:
        self.vectors.update(zip(ids, vectors, strict=True))
        return len(ids)


def test_idle_is_never_reported_while_a_woken_row_waits():
    from store.worker import EmbedWorker

    table = RowWrittenDuringEmptyLook()
    table.worker = EmbedWorker(table, HashEmbedder(dim=8, delay_s=0.5))  # slow: a wrong idle shows
    table.worker.start()
    try:
        assert table.worker.wait_idle(10)
        assert list(table.vectors) == [1], "idle was reported with a row written before the wake still unembedded"
    finally:
        table.worker.stop()
