"""The stable API's functions (list, open, page, search, filter, stats, export); stateless: each call names its
source, and the browser keeps recently used datasets open under the session "api". The tab registers each
`BrowserApi` method under its own name (e.g. ``/datasets_page``); the type hints become the API's schema."""

from __future__ import annotations

from collections.abc import Callable

from databrowser import render
from databrowser.browser import DatasetBrowser
from databrowser.query import ViewSpec
from databrowser.sources import SourceRef

API_SESSION = "api"


class BrowserApi:
    """JSON answers over one DatasetBrowser; every method is one endpoint."""

    def __init__(self, browser: DatasetBrowser):
        self.browser = browser

    def endpoints(self) -> list[Callable]:
        """The methods served as JSON endpoints, named as their api_name."""
        return [self.datasets_list, self.datasets_open, self.datasets_page, self.datasets_search,
                self.datasets_filter, self.datasets_stats]

    def _page(self, source: str, spec: ViewSpec, page: int, page_size: int, config: str, split: str) -> dict:
        ref = SourceRef(source.strip(), config, split)
        ds = self.browser.open(API_SESSION, ref)
        result = render.page_json(ds, self.browser.page(API_SESSION, ref, spec, int(page), int(page_size)))
        result.update({"search": spec.search, "where": spec.where, "order_by": spec.order_by})
        return result

    def datasets_list(self) -> dict:
        """Samples, and how to name the other sources."""
        return {
            "samples": self.browser.samples(),
            "other_sources": {
                "local": "a file or folder under the allowed folders: "
                         + ", ".join(str(d) for d in self.browser.allowed_dirs),
                "hub": "hub:<owner/name> (needs the network; refused offline)",
                "formats": "CSV, TSV, JSON, JSON Lines, Parquet, Arrow, text, image folder, save_to_disk folder",
            },
        }

    def datasets_open(self, source: str, config: str = "", split: str = "") -> dict:
        """Open a dataset: name, rows, columns and types, configs and splits, notes."""
        return render.summary_json(self.browser.open(API_SESSION, SourceRef(source.strip(), config, split)))

    def datasets_page(self, source: str, page: int = 1, page_size: int = 100, config: str = "",
                      split: str = "") -> dict:
        """One page of rows (1-based page), with row indices and the total."""
        return self._page(source, ViewSpec(), page, page_size, config, split)

    def datasets_search(self, source: str, query: str, page: int = 1, page_size: int = 100, config: str = "",
                        split: str = "") -> dict:
        """Rows whose text columns contain `query` (case-insensitive), with the matching count."""
        return self._page(source, ViewSpec(search=query), page, page_size, config, split)

    def datasets_filter(self, source: str, where: str = "", order_by: str = "", search: str = "", page: int = 1,
                        page_size: int = 100, config: str = "", split: str = "") -> dict:
        """Rows matching a SQL WHERE expression, sorted by an ORDER BY expression, with the matching count."""
        return self._page(source, ViewSpec(search, where, order_by), page, page_size, config, split)

    def datasets_stats(self, source: str, search: str = "", where: str = "", config: str = "",
                       split: str = "") -> dict:
        """Statistics of every column over the rows matching search and filter."""
        stats = self.browser.stats(API_SESSION, SourceRef(source.strip(), config, split), ViewSpec(search, where))
        return {"columns": [{"name": s.name, "kind": s.kind, "summary": s.summary, "plot": s.plot,
                             "bars": [[label, n] for label, n in s.bars]} for s in stats]}

    def export(self, source: str, search: str, where: str, order_by: str, fmt: str, config: str,
               split: str) -> str:
        """Write a view named in full to a file; returns its path (served by the tab as a download)."""
        ref = SourceRef(source.strip(), config or "", split or "")
        spec = ViewSpec(search or "", where or "", order_by or "")
        return str(self.browser.export(API_SESSION, ref, spec, (fmt or "csv").strip().lower()))
