"""DatasetBrowser: every open dataset, keyed per session, bounded (LRU), plus paging, views, stats and export.

The UI keeps only a `SourceRef` and a `ViewSpec` (plain data) per user; the Arrow data, the SQL engine and cached
selections live here. A dataset evicted by the LRU is reopened from its source on the next request (its converted
Arrow file is cached on disk, so that is cheap).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from databrowser import sources
from databrowser.errors import DatasetError
from databrowser.export import export_rows
from databrowser.query import SqlEngine, ViewSpec
from databrowser.samples import SAMPLES
from databrowser.sources import SourceRef
from databrowser.stats import ColumnStats, column_stats
from databrowser.table import OpenDataset

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
CACHED_VIEWS = 4


@dataclass
class Page:
    """One page of a view: the rows, their indices in the whole dataset, and where the page sits."""

    rows: pa.Table
    row_ids: np.ndarray
    page: int  # 1-based
    pages: int
    page_size: int
    matching: int  # rows in the view
    total: int  # rows in the dataset
    query_ms: float = 0.0


@dataclass
class _Entry:
    ds: OpenDataset
    engine: SqlEngine
    views: OrderedDict = field(default_factory=OrderedDict)  # ViewSpec -> row ids (None: all rows)
    stats: OrderedDict = field(default_factory=OrderedDict)  # ViewSpec -> list[ColumnStats]
    lock: threading.Lock = field(default_factory=threading.Lock)


class DatasetBrowser:
    """Opens datasets from any source and answers page, search, filter, stats and export requests."""

    def __init__(self, cache_dir: Path, allowed_dirs: Iterable[Path], *, offline: bool = False,
                 max_upload_mb: float = 200, per_session: int = 3, max_open: int = 16, timeout_s: float = 10.0,
                 export_dir: Path | None = None):
        self.cache_dir = Path(cache_dir)
        self.allowed_dirs = tuple(Path(d) for d in allowed_dirs)
        self.offline = offline
        self.max_upload_mb = max_upload_mb
        self.per_session = per_session
        self.max_open = max_open
        self.timeout_s = timeout_s
        # gradio serves files from the temp dir, so exports go there (not into the data dir)
        self.export_dir = Path(export_dir or Path(tempfile.gettempdir()) / "playground-dataset-exports")
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._opening: dict[tuple[str, str], threading.Lock] = {}

    @classmethod
    def from_config(cls, config) -> DatasetBrowser:
        """Build from an AppConfig: cache under data_dir, reads limited to readable_dirs."""
        return cls(Path(config.data_dir) / "datasets", config.readable_dirs, offline=config.offline,
                   max_upload_mb=config.max_upload_mb)

    def samples(self) -> list[dict[str, str]]:
        """The registered samples: source string, title, description."""
        return [{"source": f"sample:{s.name}", "title": s.title, "description": s.description}
                for s in SAMPLES.values()]

    def _load(self, ref: SourceRef) -> OpenDataset:
        source = ref.source.strip()
        if not source:
            raise DatasetError("No dataset given: expected sample:<name>, hub:<id>, or a path.")
        if source.startswith("sample:"):
            return sources.open_sample(source.removeprefix("sample:"), self.cache_dir)
        if source.startswith("hub:"):
            return sources.open_hub(ref, self.cache_dir, self.offline)
        if source.startswith("upload:"):
            return sources.open_upload(source.removeprefix("upload:"), self.cache_dir)
        return sources.open_local(source, self.allowed_dirs, self.cache_dir, ref.split)

    def _entry(self, session: str, ref: SourceRef) -> _Entry:
        key = (session, ref.key)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:  # concurrent first requests for one key open it once
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            start = time.perf_counter()
            try:
                ds = self._load(ref)
                entry = _Entry(ds, SqlEngine(ds.table, timeout_s=self.timeout_s))
            finally:
                with self._lock:
                    self._opening.pop(key, None)
            logger.info("opened %s (%d rows) in %.2f s", ref.key, ds.num_rows, time.perf_counter() - start)
            with self._lock:
                self._entries[key] = entry
                self._evict(session)
        return entry

    def _evict(self, session: str) -> None:
        mine = [k for k in self._entries if k[0] == session]
        victims = mine[:max(0, len(mine) - self.per_session)]
        overflow = len(self._entries) - len(victims) - self.max_open
        victims += [k for k in self._entries if k not in victims][:max(0, overflow)]
        for key in victims:
            self._entries.pop(key).engine.close()

    def open(self, session: str, ref: SourceRef) -> OpenDataset:
        """Open (or reuse) a dataset for a session."""
        return self._entry(session, ref).ds

    def open_upload(self, session: str, path: str | Path, original_name: str = "") -> tuple[SourceRef, OpenDataset]:
        """Convert an uploaded file (size-limited) and open it; returns its reusable SourceRef too."""
        source, notes = sources.convert_upload(Path(path), original_name, self.cache_dir, self.max_upload_mb)
        ref = SourceRef(source)
        ds = self.open(session, ref)
        ds.notes = notes
        return ref, ds

    def is_open(self, session: str, ref: SourceRef) -> bool:
        """True while the dataset is held for the session (not evicted)."""
        return (session, ref.key) in self._entries

    def open_count(self, session: str | None = None) -> int:
        """How many datasets are held, for one session or in all."""
        return sum(1 for k in self._entries if session is None or k[0] == session)

    def close_session(self, session: str) -> None:
        """Drop every dataset a session holds (called when its state is deleted)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == session]:
                self._entries.pop(key).engine.close()

    def view(self, session: str, ref: SourceRef, spec: ViewSpec) -> np.ndarray | None:
        """Row ids of the view, in view order; None means every row in stored order."""
        entry = self._entry(session, ref)
        if spec.is_all:
            return None
        with entry.lock:
            if spec in entry.views:
                entry.views.move_to_end(spec)
                return entry.views[spec]
        strings = [c.name for c in entry.ds.columns if c.kind == "string"]
        row_ids = entry.engine.select_rows(spec, strings)
        with entry.lock:
            entry.views[spec] = row_ids
            while len(entry.views) > CACHED_VIEWS:
                entry.views.popitem(last=False)
        return row_ids

    def page(self, session: str, ref: SourceRef, spec: ViewSpec, page: int = 1, page_size: int = 100,
             row: int | None = None) -> Page:
        """One page of the view; `row` (0-based position in the view) picks the page holding it instead."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise DatasetError(f"Page size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}.")
        start = time.perf_counter()
        ds = self.open(session, ref)
        row_ids = self.view(session, ref, spec)
        matching = ds.num_rows if row_ids is None else len(row_ids)
        pages = max(1, -(-matching // page_size))
        if row is not None:
            if not 0 <= row < max(matching, 1):
                raise DatasetError(f"Row {row} is out of range: the view has {matching:,} rows (0-based).")
            page = row // page_size + 1
        page = min(max(1, int(page)), pages)
        lo, hi = (page - 1) * page_size, min(page * page_size, matching)
        ids = np.arange(lo, hi, dtype=np.int64) if row_ids is None else row_ids[lo:hi]
        rows = ds.take(ids) if len(ids) else ds.table.slice(0, 0)
        return Page(rows, ids, page, pages, page_size, matching, ds.num_rows,
                    (time.perf_counter() - start) * 1000)

    def stats(self, session: str, ref: SourceRef, spec: ViewSpec) -> list[ColumnStats]:
        """Statistics of every column over the view (cached per view)."""
        entry = self._entry(session, ref)
        with entry.lock:
            if spec in entry.stats:
                return entry.stats[spec]
        strings = [c.name for c in entry.ds.columns if c.kind == "string"]
        where, params = entry.engine.condition(spec, strings)
        result = column_stats(entry.ds, entry.engine, where, params)
        with entry.lock:
            entry.stats[spec] = result
            while len(entry.stats) > CACHED_VIEWS:
                entry.stats.popitem(last=False)
        return result

    def export(self, session: str, ref: SourceRef, spec: ViewSpec, fmt: str) -> Path:
        """Write the view to a CSV / JSON Lines / Parquet file; returns its path."""
        ds = self.open(session, ref)
        row_ids = self.view(session, ref, spec)
        safe_session = "".join(ch for ch in session if ch.isalnum())[:32] or "anon"
        return export_rows(ds, row_ids, fmt, self.export_dir / safe_session / str(time.time_ns()))

    def cell(self, session: str, ref: SourceRef, row_id: int, column: str):
        """One cell's full value by row index in the dataset and column name."""
        return self.open(session, ref).cell(row_id, column)
