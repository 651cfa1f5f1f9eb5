"""SQL schemas of the two databases, as ordered migrations (PRAGMA user_version counts the applied ones).

A new release appends a migration; an applied migration is never edited. FTS5 tables are external-content
indexes kept in step by triggers, so a row and its keyword index are always written in the same transaction.
Each collection has its own FTS5 table (see `collection_fts_sql`), so a keyword search never scans the postings of
other collections, and deleting a collection drops its index instead of deleting row by row.
"""

from __future__ import annotations

COLLECTIONS_MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE collections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        chunk_size INTEGER NOT NULL,
        overlap INTEGER NOT NULL,
        created REAL NOT NULL,
        n_documents INTEGER NOT NULL DEFAULT 0,
        n_chunks INTEGER NOT NULL DEFAULT 0,
        n_embedded INTEGER NOT NULL DEFAULT 0,
        vec_version INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        n_chunks INTEGER NOT NULL,
        created REAL NOT NULL,
        UNIQUE (collection_id, content_hash)
    );
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        text TEXT NOT NULL,
        vec BLOB                    -- float32, L2-normalised; NULL until the worker embeds it
    );
    CREATE INDEX chunks_collection ON chunks (collection_id, id);
    CREATE INDEX chunks_document ON chunks (document_id);
    CREATE INDEX chunks_pending ON chunks (id) WHERE vec IS NULL;
    """,
    # Collections belong to an owner (the same key as history entries); names are unique per owner. SQLite cannot
    # drop a UNIQUE constraint, so the table is rebuilt (migrations run with foreign keys off: see store.py).
    # Collections made before owners existed belong to 'local' (Python callers); the app never shows them to a
    # browser or API client, who may be any user.
    """
    CREATE TABLE collections_v2 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        chunk_size INTEGER NOT NULL,
        overlap INTEGER NOT NULL,
        created REAL NOT NULL,
        n_documents INTEGER NOT NULL DEFAULT 0,
        n_chunks INTEGER NOT NULL DEFAULT 0,
        n_embedded INTEGER NOT NULL DEFAULT 0,
        vec_version INTEGER NOT NULL DEFAULT 0,
        UNIQUE (owner, name)
    );
    INSERT INTO collections_v2 (id, owner, name, chunk_size, overlap, created, n_documents, n_chunks, n_embedded,
                                vec_version)
        SELECT id, 'local', name, chunk_size, overlap, created, n_documents, n_chunks, n_embedded, vec_version
        FROM collections;
    DELETE FROM sqlite_sequence WHERE name = 'collections_v2';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'collections_v2', seq FROM sqlite_sequence WHERE name = 'collections';
    DROP TABLE collections;
    ALTER TABLE collections_v2 RENAME TO collections;
    """,
]

HISTORY_MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('chat', 'completion', 'image')),
        prompt TEXT NOT NULL,
        output TEXT NOT NULL,
        model TEXT NOT NULL,
        params TEXT NOT NULL,       -- JSON
        seed INTEGER,
        timings TEXT NOT NULL,      -- JSON
        image_path TEXT,            -- PNG file relative to the images folder
        created REAL NOT NULL,      -- unix time
        vec BLOB
    );
    CREATE INDEX history_owner ON history (owner, created DESC);
    CREATE INDEX history_pending ON history (id) WHERE vec IS NULL;
    CREATE VIRTUAL TABLE history_fts USING fts5 (
        prompt, output, content='history', content_rowid='id', tokenize='porter unicode61'
    );
    CREATE TRIGGER history_ai AFTER INSERT ON history BEGIN
        INSERT INTO history_fts (rowid, prompt, output) VALUES (new.id, new.prompt, new.output);
    END;
    CREATE TRIGGER history_ad AFTER DELETE ON history BEGIN
        INSERT INTO history_fts (history_fts, rowid, prompt, output) VALUES ('delete', old.id, old.prompt, old.output);
    END;
    """,
]


def collection_fts_sql(collection_id: int) -> list[str]:
    """Statements creating collection `collection_id`'s keyword index over a view of its chunks."""
    c = int(collection_id)
    return [
        f"CREATE VIEW chunks_c{c} AS SELECT id, text FROM chunks WHERE collection_id = {c}",
        f"CREATE VIRTUAL TABLE fts_c{c} USING fts5 (text, content='chunks_c{c}', content_rowid='id', "
        f"tokenize='porter unicode61')",
        f"CREATE TRIGGER fts_c{c}_ai AFTER INSERT ON chunks WHEN new.collection_id = {c} BEGIN "
        f"INSERT INTO fts_c{c} (rowid, text) VALUES (new.id, new.text); END",
        f"CREATE TRIGGER fts_c{c}_ad AFTER DELETE ON chunks WHEN old.collection_id = {c} BEGIN "
        f"INSERT INTO fts_c{c} (fts_c{c}, rowid, text) VALUES ('delete', old.id, old.text); END",
    ]


def drop_collection_fts_sql(collection_id: int) -> list[str]:
    c = int(collection_id)
    return [f"DROP TRIGGER IF EXISTS fts_c{c}_ai", f"DROP TRIGGER IF EXISTS fts_c{c}_ad",
            f"DROP TABLE IF EXISTS fts_c{c}", f"DROP VIEW IF EXISTS chunks_c{c}"]
