"""Generation history: every chat turn, completion and image, per owner, searchable by keyword and meaning.

`record` is cheap (one INSERT, plus a PNG write for images); embedding happens in a background worker.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from errors import InvalidInput, NotFound
from store import search as ranking
from store.database import Database
from store.embeddings import DEFAULT_EMBEDDER, Embedder, SentenceEmbedder
from store.schema import HISTORY_MIGRATIONS
from store.vectors import nearest, rows_from_blobs
from store.worker import EmbedWorker

logger = logging.getLogger(__name__)
KINDS = ("chat", "completion", "image")
COLUMNS = "id, owner, kind, prompt, output, model, params, seed, timings, image_path, created"


def default_embedder(cache=None, resolver=None) -> Embedder:
    """The default MiniLM embedder through `cache` (a private one-model cache when none is given)."""
    if cache is None:
        from engines.cache import ModelCache

        cache = ModelCache(max_models=1)
    return SentenceEmbedder(cache, DEFAULT_EMBEDDER, resolver)


@dataclass(frozen=True)
class Entry:
    id: int
    owner: str
    kind: str
    prompt: str
    output: str
    model: str
    params: dict
    seed: int | None
    timings: dict
    image_path: str | None
    created: float

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.created, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "when": self.when}


def parse_day(value: str | None, end: bool = False) -> float | None:
    """'YYYY-MM-DD' (UTC) as a timestamp: the day's start, or the next day's start when `end`."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(f"dates are written YYYY-MM-DD, got {value!r}") from None
    return day.timestamp() + (86400 if end else 0)


class HistoryStore:
    """Entries in `<folder>/history.db`, images as PNG files in `<folder>/images/`.

    Args:
        folder: where the database and images live.
        embedder: for meaning search (embedded in the background).
        start_worker: start the embedding thread.
    """

    def __init__(self, folder: Path, embedder: Embedder, start_worker: bool = True,
                 yield_to: Callable[[], bool] | None = None):
        self.folder = Path(folder)
        self.images = self.folder / "images"
        self.db = Database(self.folder / "history.db", HISTORY_MIGRATIONS)
        self.embedder = embedder
        self.worker = EmbedWorker(self, embedder, batch_size=32, name="history", yield_to=yield_to)
        if start_worker:
            self.worker.start()

    @classmethod
    def from_config(cls, config, cache=None, embedder: Embedder | None = None, resolver=None,
                    yield_to: Callable[[], bool] | None = None) -> HistoryStore:
        """Under `<data_dir>/index/`, embedding with the default model through `cache`."""
        return cls(Path(config.data_dir) / "index", embedder or default_embedder(cache, resolver), yield_to=yield_to)

    def close(self) -> None:
        self.worker.stop()
        self.db.close()

    # -- recording -------------------------------------------------------------------------------------------
    def record(self, owner: str, kind: str, prompt: str, output: str, model: str, params: dict,
               seed: int | None, timings: dict, image_png: bytes | None = None) -> int:
        """Store one generation; returns its id. Thread-safe; embedding is left to the worker."""
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {KINDS}, got {kind!r}")
        if not owner:
            raise ValueError("owner is empty: use store.owner_of(request, browser_id)")
        image_path = self._save_png(image_png, params, seed, model, prompt) if image_png else None
        with self.db.transaction() as conn:
            entry_id = conn.execute(
                "INSERT INTO history (owner, kind, prompt, output, model, params, seed, timings, image_path, created) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (owner, kind, prompt or "", output or "", model or "", json.dumps(params or {}, default=str),
                 None if seed is None else int(seed), json.dumps(timings or {}, default=str), image_path,
                 time.time())).lastrowid
        self.worker.wake()
        return int(entry_id)

    def _save_png(self, data: bytes, params: dict, seed: int | None, model: str, prompt: str) -> str:
        from PIL import Image, PngImagePlugin

        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception as exc:
            raise InvalidInput(f"image_png is not a readable image ({exc})") from None
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", json.dumps({"prompt": prompt, "model": model, "seed": seed, **(params or {})},
                                               default=str))
        relative = Path(datetime.now(UTC).strftime("%Y-%m")) / f"{uuid.uuid4().hex}.png"
        target = self.images / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".partial")
        image.save(tmp, format="PNG", pnginfo=info)
        tmp.replace(target)  # never a half-written PNG under its final name
        return str(relative)

    # -- reading ---------------------------------------------------------------------------------------------
    def _entry(self, row: tuple) -> Entry:
        values = list(row)
        values[6], values[8] = json.loads(values[6]), json.loads(values[8])
        values[9] = str(self.images / values[9]) if values[9] else None
        return Entry(*values)

    def list(self, owner: str, kind: str = "", model: str = "", date_from: str = "", date_to: str = "",
             limit: int = 50, offset: int = 0) -> list[Entry]:
        """The owner's entries, newest first, filtered by kind, model and date range (YYYY-MM-DD, inclusive)."""
        where, args = ["owner=?"], [owner]
        if kind:
            if kind not in KINDS:
                raise InvalidInput(f"kind must be one of {KINDS} (or empty for all), got {kind!r}")
            where.append("kind=?")
            args.append(kind)
        if model:
            where.append("model=?")
            args.append(model)
        start, end = parse_day(date_from), parse_day(date_to, end=True)
        if start is not None:
            where.append("created>=?")
            args.append(start)
        if end is not None:
            where.append("created<?")
            args.append(end)
        rows = self.db.read().execute(
            f"SELECT {COLUMNS} FROM history WHERE {' AND '.join(where)} ORDER BY created DESC, id DESC "
            f"LIMIT ? OFFSET ?", (*args, max(1, min(int(limit), 500)), max(0, int(offset)))).fetchall()
        return [self._entry(r) for r in rows]

    def get(self, owner: str, entry_id: int) -> Entry:
        """One of the owner's entries; LookupError when it is not there (or belongs to someone else)."""
        row = self.db.read().execute(f"SELECT {COLUMNS} FROM history WHERE id=? AND owner=?",
                                     (int(entry_id), owner)).fetchone()
        if row is None:
            raise NotFound(f"no history entry {entry_id} in your history")
        return self._entry(row)

    def models(self, owner: str) -> list[str]:
        return [r[0] for r in self.db.read().execute(
            "SELECT DISTINCT model FROM history WHERE owner=? ORDER BY model", (owner,))]

    def count(self, owner: str | None = None) -> int:
        sql, args = ("SELECT count(*) FROM history", ()) if owner is None else \
            ("SELECT count(*) FROM history WHERE owner=?", (owner,))
        return self.db.read().execute(sql, args).fetchone()[0]

    def rerun_fields(self, owner: str, entry_id: int) -> tuple[str, str, str, dict]:
        """(kind, prompt, model, params) of an entry, to send back to the tab that made it."""
        e = self.get(owner, entry_id)
        params = dict(e.params)
        if e.seed is not None:
            params["seed"] = e.seed
        return e.kind, e.prompt, e.model, params

    def delete(self, owner: str, entry_id: int) -> bool:
        """Delete one of the owner's entries (and its image); False when there was none."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT image_path FROM history WHERE id=? AND owner=?",
                               (int(entry_id), owner)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM history WHERE id=?", (int(entry_id),))
        if row[0]:
            (self.images / row[0]).unlink(missing_ok=True)
        return True

    # -- search ----------------------------------------------------------------------------------------------
    def search(self, owner: str, query: str, top_k: int = 10, mode: str = "hybrid", kind: str = "",
               min_similarity: float = 0.2) -> list[tuple[Entry, ranking.Hit]]:
        """The owner's entries best matching `query`, best first."""
        query = ranking.check_query(query, mode)
        conn, depth = self.db.read(), ranking.candidates(top_k)
        extra, args = ("AND h.kind=?", [kind]) if kind else ("", [])
        keyword, semantic = [], []
        terms = ranking.fts_terms(query)
        if mode != "semantic" and terms:
            keyword = conn.execute(
                "SELECT h.id, bm25(history_fts) AS s FROM history_fts JOIN history h ON h.id = history_fts.rowid "
                f"WHERE history_fts MATCH ? AND h.owner=? {extra} ORDER BY s LIMIT ?",
                (terms, owner, *args, depth)).fetchall()
        if mode != "keyword":
            rows = conn.execute(f"SELECT h.id, h.vec FROM history h WHERE h.owner=? {extra} AND h.vec IS NOT NULL",
                                (owner, *args)).fetchall()
            if rows:
                ids, matrix = rows_from_blobs(rows, self.embedder.dim)
                q = self.embedder.encode([query])[0]
                semantic = [(int(ids[i]), s) for i, s in nearest(matrix, q, depth, min_similarity)]
        hits = ranking.fuse(keyword, semantic, int(top_k))
        entries = {h.id: self.get(owner, h.id) for h in hits}
        return [(entries[h.id], h) for h in hits]

    # -- the embedding worker's side -------------------------------------------------------------------------
    def pending(self, limit: int) -> list[tuple[int, str]]:
        return self.db.read().execute(
            "SELECT id, prompt || char(10) || substr(output, 1, 1000) FROM history WHERE vec IS NULL "
            "ORDER BY id LIMIT ?", (limit,)).fetchall()

    def store_vectors(self, ids: list[int], vectors: np.ndarray) -> int:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.db.transaction() as conn:
            cur = conn.executemany("UPDATE history SET vec=? WHERE id=? AND vec IS NULL",
                                   [(v.tobytes(), i) for i, v in zip(ids, vectors, strict=True)])
            return cur.rowcount
