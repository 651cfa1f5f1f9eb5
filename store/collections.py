"""Collections: named sets of chunked documents, searchable by keyword at once and by meaning once embedded.

Every collection belongs to an owner (the key `owners.owner_of` gives a request, as for history entries): every
method takes the owner first, and a collection of another owner behaves exactly like one that does not exist.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from errors import InvalidInput
from identity import require_owner
from store import search as ranking
from store.chunking import check_chunking, chunk_text, content_hash
from store.database import Database
from store.documents import Document, read_document
from store.embeddings import Embedder, apply_torch_threads
from store.records import AddResult, CollectionError, CollectionInfo, DocumentInfo, Passage, SearchResult
from store.schema import COLLECTIONS_MIGRATIONS, collection_fts_sql, drop_collection_fts_sql
from store.vectors import VectorCache, nearest, rows_from_blobs
from store.worker import EmbedWorker

logger = logging.getLogger(__name__)
_NAME = re.compile(r"^[\w][\w .:-]{0,63}$")
BATCH_CHUNKS = 1000  # chunks per write transaction while adding documents
Progress = Callable[[float, str], None]


class CollectionIndex:
    """Every collection in `<folder>/collections.db`, vectors cached in `<folder>/vectors/`.

    Args:
        folder: where the database and vector files live.
        embedder: the sentence embedder (the worker embeds with it; queries too).
        start_worker: start the background embedding thread (tests may drive it by hand).
    """

    def __init__(self, folder: Path, embedder: Embedder, start_worker: bool = True, batch_size: int = 64,
                 yield_to: Callable[[], bool] | None = None):
        self.folder = Path(folder)
        self.db = Database(self.folder / "collections.db", COLLECTIONS_MIGRATIONS)
        self.embedder = embedder
        self.vectors = VectorCache(self.folder / "vectors", embedder.dim)
        self.worker = EmbedWorker(self, embedder, batch_size=batch_size, name="collections", yield_to=yield_to)
        self._adding: dict[int, int] = {}
        self._adding_lock = threading.Lock()
        # the query is embedded while FTS5 runs: both release the GIL, so a hybrid query costs max(), not sum()
        self._query_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="query-embed",
                                              initializer=apply_torch_threads)
        if start_worker:
            self.worker.start()

    @classmethod
    def from_config(cls, config, cache=None, embedder: Embedder | None = None, resolver=None,
                    yield_to: Callable[[], bool] | None = None) -> CollectionIndex:
        """Under `<data_dir>/index/`, embedding with the default model through `cache`."""
        from store.history import default_embedder

        return cls(Path(config.data_dir) / "index", embedder or default_embedder(cache, resolver), yield_to=yield_to)

    def close(self) -> None:
        self.worker.stop()
        self._query_pool.shutdown(wait=False)
        self.db.close()

    # -- collections -----------------------------------------------------------------------------------------
    def create(self, owner: str, name: str, chunk_size: int = 100, overlap: int = 20) -> CollectionInfo:
        """Create one of the owner's collections (the same name with the same settings returns the existing one)."""
        owner = require_owner(owner)
        name = (name or "").strip()
        if not _NAME.match(name):
            raise CollectionError(f"a collection name is 1-64 letters, digits, spaces or . : _ -, got {name!r}")
        chunk_size, overlap = int(chunk_size), int(overlap)
        check_chunking(chunk_size, overlap)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT chunk_size, overlap FROM collections WHERE owner=? AND name=?",
                               (owner, name)).fetchone()
            if row and tuple(row) != (chunk_size, overlap):
                raise CollectionError(f"collection {name!r} exists with chunks of {row[0]} words, overlap {row[1]}")
            if not row:
                cid = conn.execute("INSERT INTO collections (owner, name, chunk_size, overlap, created) "
                                   "VALUES (?,?,?,?,?)", (owner, name, chunk_size, overlap, time.time())).lastrowid
                for statement in collection_fts_sql(cid):
                    conn.execute(statement)
        return self.info(owner, name)

    def names(self, owner: str) -> list[str]:
        """The owner's collection names, sorted."""
        return [r[0] for r in self.db.read().execute("SELECT name FROM collections WHERE owner=? ORDER BY name",
                                                     (require_owner(owner),))]

    def list(self, owner: str) -> list[CollectionInfo]:
        return [self.info(owner, n) for n in self.names(owner)]

    def info(self, owner: str, name: str, conn=None) -> CollectionInfo:
        """One of the owner's collections; CollectionError when the owner has none of that name."""
        row = (conn or self.db.read()).execute(
            "SELECT id, name, chunk_size, overlap, n_documents, n_chunks, n_embedded FROM collections "
            "WHERE owner=? AND name=?", (require_owner(owner), (name or "").strip())).fetchone()
        if row is None:  # names the owner's own collections only: another owner's name is never confirmed
            known = ", ".join(self.names(owner)) or "none yet"
            raise CollectionError(f"no collection named {name!r}; yours: {known}")
        with self._adding_lock:
            adding = self._adding.get(row[0], 0) > 0
        return CollectionInfo(*row, adding=adding, error=self.worker.error)

    def delete(self, owner: str, name: str) -> CollectionInfo:
        """Delete one of the owner's collections with its documents, chunks and vectors."""
        info = self.info(owner, name)
        with self.db.transaction() as conn:
            for statement in drop_collection_fts_sql(info.id):  # first: the chunk deletes need not touch it
                conn.execute(statement)
            conn.execute("DELETE FROM chunks WHERE collection_id=?", (info.id,))
            conn.execute("DELETE FROM documents WHERE collection_id=?", (info.id,))
            conn.execute("DELETE FROM collections WHERE id=?", (info.id,))
        self.vectors.drop(f"c{info.id}")
        return info

    # -- documents -------------------------------------------------------------------------------------------
    def documents(self, owner: str, name: str, contains: str = "", limit: int = 200,
                  offset: int = 0) -> list[DocumentInfo]:
        """The documents of one of the owner's collections, oldest first, with their chunk counts.

        Args:
            contains: keep only documents whose name contains this (case-insensitive).
            limit: at most this many (1-1000).
            offset: skip this many.
        """
        conn = self.db.read()
        info = self.info(owner, name, conn)
        pattern = "%" + (contains or "").strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = conn.execute(
            "SELECT id, name, n_chunks, created FROM documents WHERE collection_id=? AND name LIKE ? ESCAPE '\\' "
            "ORDER BY id LIMIT ? OFFSET ?",
            (info.id, pattern, max(1, min(int(limit), 1000)), max(0, int(offset)))).fetchall()
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        embedded = dict(conn.execute(
            f"SELECT document_id, count(*) FROM chunks WHERE document_id IN ({marks}) AND vec IS NOT NULL "
            "GROUP BY document_id", [r[0] for r in rows]).fetchall())
        return [DocumentInfo(r[0], r[1], r[2], embedded.get(r[0], 0), r[3]) for r in rows]

    def delete_document(self, owner: str, name: str, document_id: int) -> DocumentInfo:
        """Delete one document of one of the owner's collections: its chunks leave the keyword index (triggers),
        the vectors and the counts in the same transaction, and its content may be added again afterwards.

        Raises:
            CollectionError: no such collection of the owner's, or no such document in it.
        """
        with self.db.transaction() as conn:
            info = self.info(owner, name, conn)
            row = conn.execute("SELECT id, name, n_chunks, created FROM documents WHERE id=? AND collection_id=?",
                               (int(document_id), info.id)).fetchone()
            if row is None:
                raise CollectionError(f"no document {document_id} in collection {info.name!r}")
            embedded = conn.execute("SELECT count(*) FROM chunks WHERE document_id=? AND vec IS NOT NULL",
                                    (row[0],)).fetchone()[0]
            chunks = conn.execute("DELETE FROM chunks WHERE document_id=?", (row[0],)).rowcount
            conn.execute("DELETE FROM documents WHERE id=?", (row[0],))  # its content hash goes with it
            conn.execute("UPDATE collections SET n_documents = n_documents - 1, n_chunks = n_chunks - ?, "
                         "n_embedded = n_embedded - ?, vec_version = vec_version + 1 WHERE id=?",
                         (chunks, embedded, info.id))
        # the vector cache sees fewer rows than it holds at the next search and reloads the collection's matrix
        return DocumentInfo(row[0], row[1], chunks, embedded, row[3])

    # -- adding ----------------------------------------------------------------------------------------------
    def add_files(self, owner: str, name: str, paths: Iterable[str | Path], max_bytes: int = 200 * 2**20,
                  progress: Progress | None = None) -> AddResult:
        """Read every file first (any bad file: DocumentError, nothing written), then add them."""
        self.info(owner, name)  # an unknown collection fails before any file is read
        docs = [read_document(p, max_bytes=max_bytes) for p in paths]
        return self.add_documents(owner, name, docs, progress)

    def add_documents(self, owner: str, name: str, docs: Iterable[Document], progress: Progress | None = None,
                      total: int | None = None) -> AddResult:
        """Chunk and store documents in transactions of about BATCH_CHUNKS chunks; embedding follows in the
        background. A document whose content is already in the collection is skipped."""
        info = self.info(owner, name)
        with self._adding_lock:
            self._adding[info.id] = self._adding.get(info.id, 0) + 1
        added = skipped = chunks = seen_docs = 0
        batch: list[tuple[Document, str, list[str]]] = []
        try:
            for doc in docs:
                seen_docs += 1
                pieces = chunk_text(doc.text, info.chunk_size, info.overlap)
                if not pieces:
                    skipped += 1
                    continue
                batch.append((doc, content_hash(doc.text), pieces))
                if sum(len(b[2]) for b in batch) >= BATCH_CHUNKS:
                    a, c = self._write_batch(info, batch)
                    added, skipped, chunks = added + a, skipped + len(batch) - a, chunks + c
                    batch = []
                    self.worker.wake()
                    if progress:
                        progress(seen_docs / total if total else 0.0, f"stored {added:,} documents")
            if batch:
                a, c = self._write_batch(info, batch)
                added, skipped, chunks = added + a, skipped + len(batch) - a, chunks + c
        finally:
            with self._adding_lock:
                self._adding[info.id] -= 1
            self.worker.wake()
        return AddResult(added=added, skipped=skipped, chunks=chunks)

    def _write_batch(self, info: CollectionInfo, batch: list[tuple[Document, str, list[str]]]) -> tuple[int, int]:
        added = chunks = 0
        with self.db.transaction() as conn:
            hashes = [b[1] for b in batch]
            marks = ",".join("?" * len(hashes))
            known = {r[0] for r in conn.execute(
                f"SELECT content_hash FROM documents WHERE collection_id=? AND content_hash IN ({marks})",
                (info.id, *hashes))}
            now = time.time()
            for doc, digest, pieces in batch:
                if digest in known:
                    continue
                known.add(digest)
                doc_id = conn.execute(
                    "INSERT INTO documents (collection_id, name, content_hash, n_chunks, created) VALUES (?,?,?,?,?)",
                    (info.id, doc.name[:500], digest, len(pieces), now)).lastrowid
                conn.executemany("INSERT INTO chunks (collection_id, document_id, idx, text) VALUES (?,?,?,?)",
                                 [(info.id, doc_id, i, piece) for i, piece in enumerate(pieces)])
                added, chunks = added + 1, chunks + len(pieces)
            conn.execute("UPDATE collections SET n_documents = n_documents + ?, n_chunks = n_chunks + ? WHERE id=?",
                         (added, chunks, info.id))
        return added, chunks

    # -- the embedding worker's side -------------------------------------------------------------------------
    def pending(self, limit: int) -> list[tuple[int, str]]:
        return self.db.read().execute(
            "SELECT id, text FROM chunks WHERE vec IS NULL ORDER BY id LIMIT ?", (limit,)).fetchall()

    def store_vectors(self, ids: list[int], vectors: np.ndarray) -> int:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        stored = 0
        with self.db.transaction() as conn:
            marks = ",".join("?" * len(ids))
            owner = dict(conn.execute(f"SELECT id, collection_id FROM chunks WHERE id IN ({marks})", ids).fetchall())
            per_collection: dict[int, int] = {}
            for chunk_id, vec in zip(ids, vectors, strict=True):
                if chunk_id not in owner:  # its collection was deleted meanwhile
                    continue
                cur = conn.execute("UPDATE chunks SET vec=? WHERE id=? AND vec IS NULL", (vec.tobytes(), chunk_id))
                per_collection[owner[chunk_id]] = per_collection.get(owner[chunk_id], 0) + cur.rowcount
            for cid, n in per_collection.items():
                conn.execute("UPDATE collections SET n_embedded = n_embedded + ?, vec_version = vec_version + 1 "
                             "WHERE id=?", (n, cid))
                stored += n
        return stored

    # -- searching -------------------------------------------------------------------------------------------
    def search(self, owner: str, name: str, query: str, top_k: int = 5, mode: str = "hybrid",
               min_similarity: float = 0.25) -> SearchResult:
        """The `top_k` best passages of one of the owner's collections; notes say when it is still indexing."""
        query = ranking.check_query(query, mode)
        if not 1 <= int(top_k) <= 100:
            raise InvalidInput(f"top_k must be between 1 and 100, got {top_k}")
        vector = self._query_pool.submit(self.embedder.encode, [query]) if mode != "keyword" else None
        conn = self.db.read()
        conn.execute("BEGIN")  # one snapshot for the counts, the keyword hits and the vectors
        try:
            info = self.info(owner, name, conn)
            depth = ranking.candidates(top_k)
            keyword = self._keyword(conn, info, query, depth) if mode != "semantic" else []
            semantic = self._semantic(conn, info, vector, depth, min_similarity) if vector else []
            hits = ranking.fuse(keyword, semantic, int(top_k))
            passages = self._passages(conn, info, hits)
        finally:
            conn.execute("COMMIT")
        notes = []
        if info.indexing:
            notes.append(f"Collection {info.name!r} is still indexing ({info.embedded:,} of {info.chunks:,} chunks "
                         f"embedded): meaning search covers only the embedded part.")
        return SearchResult(passages, info, notes)

    def _keyword(self, conn, info: CollectionInfo, query: str, depth: int) -> list[tuple[int, float]]:
        words = ranking.query_words(query)
        if not words:
            return []
        table = f"fts_c{int(info.id)}"
        if len(words) > 1 and info.chunks > 1000:  # document frequencies cost ~0.3 ms a word
            df = {w: conn.execute(f"SELECT count(*) FROM {table} WHERE {table} MATCH ?",
                                  (ranking.quote(w),)).fetchone()[0] for w in words}
            words = ranking.prune_common(words, df, info.chunks)
        return conn.execute(f"SELECT rowid, rank FROM {table} WHERE {table} MATCH ? ORDER BY rank LIMIT ?",
                            (" OR ".join(ranking.quote(w) for w in words), depth)).fetchall()

    def _semantic(self, conn, info: CollectionInfo, vector: Future, depth: int,
                  min_sim: float) -> list[tuple[int, float]]:
        if info.embedded == 0:
            return []
        version = conn.execute("SELECT vec_version FROM collections WHERE id=?", (info.id,)).fetchone()[0]

        def load_after(last: int):
            rows = conn.execute("SELECT id, vec FROM chunks WHERE collection_id=? AND id>? AND vec IS NOT NULL "
                                "ORDER BY id", (info.id, last)).fetchall()
            return rows_from_blobs(rows, self.embedder.dim)

        ids, matrix = self.vectors.get(f"c{info.id}", version, info.embedded, load_after)
        return [(int(ids[i]), s) for i, s in nearest(matrix, vector.result()[0], depth, min_sim)]

    def _passages(self, conn, info: CollectionInfo, hits: list[ranking.Hit]) -> list[Passage]:
        if not hits:
            return []
        marks = ",".join("?" * len(hits))
        rows = {r[0]: r[1:] for r in conn.execute(
            f"SELECT c.id, d.name, c.idx, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
            f"WHERE c.id IN ({marks})", [h.id for h in hits])}
        return [Passage(info.name, rows[h.id][0], rows[h.id][1], rows[h.id][2], h.score, h.bm25, h.similarity)
                for h in hits if h.id in rows]

    def retrieve_for_prompt(self, owner: str, collection: str, query: str, top_k: int = 4, max_chars: int = 2000):
        """Passages of the owner's collection for a chat prompt within `max_chars`; see rag.retrieve_for_prompt."""
        from store.rag import retrieve_for_prompt

        return retrieve_for_prompt(self, owner, collection, query, top_k, max_chars)
