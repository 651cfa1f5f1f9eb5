"""One SQLite database in WAL mode: a single serialized writer, a read connection per thread, migrations.

WAL lets searches read while the embedding worker writes. Every write goes through `transaction()`, so a crash
(even SIGKILL) leaves either the whole transaction or none of it: SQLite's journal guarantees the file never
corrupts, and `synchronous=NORMAL` in WAL mode only risks the last commits on a power cut, not on a process kill.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of the app."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the pragmas every connection needs (autocommit mode: transactions are explicit)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class Database:
    """A SQLite file with ordered migrations.

    Args:
        path: the database file (its folder is created).
        migrations: SQL scripts; the first `user_version` of them are already applied.
    """

    def __init__(self, path: Path, migrations: list[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write = connect(self.path)
        self._write_lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._migrate(migrations)

    def _migrate(self, migrations: list[str]) -> None:
        with self._write_lock:
            version = self._write.execute("PRAGMA user_version").fetchone()[0]
            if version > len(migrations):
                raise SchemaTooNew(f"{self.path} has schema version {version}; this app knows up to "
                                   f"{len(migrations)}: upgrade the app or use another --data-dir")
            # SQLite's recipe for table rebuilds: foreign keys off (a DROP TABLE would otherwise cascade into the
            # child rows), then a foreign_key_check before each commit. The pragma is a no-op inside a transaction.
            self._write.execute("PRAGMA foreign_keys=OFF")
            try:
                for number, script in enumerate(migrations[version:], start=version + 1):
                    self._apply(number, script)
            finally:
                self._write.execute("PRAGMA foreign_keys=ON")

    def _apply(self, number: int, script: str) -> None:
        try:  # one migration, one transaction: a failed one leaves the previous version intact
            self._write.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={number};")
            broken = self._write.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise sqlite3.IntegrityError(f"migration {number} broke {len(broken)} foreign keys, e.g. {broken[0]}")
            self._write.execute("COMMIT")
        except sqlite3.Error:
            if self._write.in_transaction:
                self._write.execute("ROLLBACK")
            raise
        logger.info("%s: schema migrated to version %d", self.path.name, number)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer connection inside BEGIN IMMEDIATE ... COMMIT (rolled back on any exception)."""
        with self._write_lock:
            self._write.execute("BEGIN IMMEDIATE")
            try:
                yield self._write
            except BaseException:
                self._write.execute("ROLLBACK")
                raise
            self._write.execute("COMMIT")

    def read(self) -> sqlite3.Connection:
        """This thread's read connection (WAL: sees the last committed state, never blocks the writer)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def integrity(self) -> str:
        """PRAGMA integrity_check: 'ok' or the problems found."""
        rows = self.read().execute("PRAGMA integrity_check").fetchall()
        return "; ".join(r[0] for r in rows)

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._write.close()
