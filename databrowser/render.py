"""Turn pages and statistics into plain values a UI table, gallery, plot or JSON answer can show."""

from __future__ import annotations

from typing import Any

from databrowser.browser import Page
from databrowser.stats import ColumnStats
from databrowser.table import OpenDataset, cell_text, image_data_url, jsonable, pil_image

ROW_HEADER = "#"


def table_rows(ds: OpenDataset, page: Page, max_chars: int = 300) -> tuple[list[str], list[list[Any]], list[str]]:
    """Headers, rows and per-column datatypes for a table; the first column holds each row's index in the dataset.

    Image cells become <img> tags with data: URLs (datatype "html"), so they show as pictures; long text is cut at
    `max_chars`.
    """
    headers = [ROW_HEADER] + [c.name for c in ds.columns]
    datatypes = ["number"] + ["html" if c.kind == "image" else "number" if c.kind == "number" else "str"
                              for c in ds.columns]
    rows = []
    for row_id, record in zip(page.row_ids.tolist(), page.rows.to_pylist(), strict=False):
        cells: list[Any] = [row_id]
        for col in ds.columns:
            value = record[col.name]
            if col.kind == "image":
                url = image_data_url(value)
                style = "height:64px;width:auto;max-width:none"
                cells.append(f'<img src="{url}" alt="row {row_id}" style="{style}">' if url else "")
            else:
                text = cell_text(value, col, max_chars)
                cells.append("" if text is None else text if col.kind == "number" else str(text))
        rows.append(cells)
    return headers, rows, datatypes


def gallery_items(ds: OpenDataset, page: Page) -> list[tuple[Any, str]]:
    """(PIL image, caption) for every image on the page; the caption is the row index and any label."""
    image_cols = [c for c in ds.columns if c.kind == "image"]
    if not image_cols:
        return []
    label_cols = [c for c in ds.columns if c.kind == "label"] or [c for c in ds.columns if c.kind == "string"][:1]
    items = []
    for row_id, record in zip(page.row_ids.tolist(), page.rows.to_pylist(), strict=False):
        image = pil_image(record[image_cols[0].name])
        if image is None:
            continue
        caption = f"#{row_id}"
        if label_cols:
            caption += f" · {cell_text(record[label_cols[0].name], label_cols[0], 60)}"
        items.append((image, caption))
    return items


def page_info(page: Page) -> str:
    """One line: which rows of how many, and the page count."""
    if page.matching == 0:
        return f"No rows match (dataset: {page.total:,} rows)."
    lo = (page.page - 1) * page.page_size
    shown = f"Rows {lo + 1:,}–{lo + len(page.row_ids):,} of {page.matching:,}"
    if page.matching != page.total:
        shown += f" matching (dataset: {page.total:,})"
    return f"{shown} · page {page.page:,} of {page.pages:,} · {page.query_ms:.0f} ms"


def page_json(ds: OpenDataset, page: Page) -> dict:
    """A page as JSON: rows as dicts (images as data URLs), their row indices, and the counts."""
    records = page.rows.to_pylist()
    return {
        "dataset": ds.name, "page": page.page, "pages": page.pages, "page_size": page.page_size,
        "matching_rows": page.matching, "total_rows": page.total, "row_ids": page.row_ids.tolist(),
        "rows": [{c.name: jsonable(r[c.name], c) for c in ds.columns} for r in records],
    }


def summary_json(ds: OpenDataset) -> dict:
    """What was opened: name, rows, columns with types, splits and configs, notes."""
    return {
        "dataset": ds.name, "source": ds.source, "rows": ds.num_rows,
        "columns": [{"name": c.name, "type": c.type, "kind": c.kind} for c in ds.columns],
        "configs": list(ds.configs), "config": ds.config, "splits": list(ds.splits), "split": ds.split,
        "partial": ds.partial, "notes": list(ds.notes),
    }


def stats_table(stats: list[ColumnStats]) -> tuple[list[str], list[list[Any]]]:
    """One summary row a column: kind, non-null, nulls, distinct, min, max, mean, std or lengths."""
    headers = ["column", "kind", "non-null", "nulls", "distinct", "min", "max", "mean", "std / mean length"]
    rows = []
    for s in stats:
        m = s.summary
        is_text = "min_length" in m
        rows.append([
            s.name, s.kind, m.get("non_null"), m.get("nulls"), m.get("distinct", ""),
            m.get("min_length" if is_text else "min", ""), m.get("max_length" if is_text else "max", ""),
            "" if is_text else m.get("mean", ""), m.get("mean_length" if is_text else "std", ""),
        ])
    return headers, [[("" if v is None else str(v)) for v in r] for r in rows]


def stats_bars(stats: list[ColumnStats], column: str) -> tuple[str, list[dict]]:
    """The plot title and its bars ({"bin", "count", "order"}) for one column; no bars when it has no plot."""
    for s in stats:
        if s.name == column:
            what = {"histogram": "histogram", "counts": "counts", "length": "text length (characters)"}
            title = f"{column}: {what.get(s.plot, 'no plot for this kind')}"
            return title, [{"bin": label, "count": n, "order": i} for i, (label, n) in enumerate(s.bars)]
    return f"No column {column!r}", []
