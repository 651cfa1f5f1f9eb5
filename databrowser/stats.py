"""Column statistics over a view, computed by DuckDB on the Arrow data (nothing is loaded into pandas).

One scan gathers every column's summary; then one query a column gives its plot: a histogram for numbers,
counts for categories, labels and booleans, a length distribution for text and lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from databrowser.query import SqlEngine, quote_ident
from databrowser.table import Column, OpenDataset

BINS = 20
TOP = 20
CATEGORY_MAX_DISTINCT = 100


@dataclass
class ColumnStats:
    """Summary figures of one column and the bars of its plot (label, count), in display order."""

    name: str
    kind: str
    summary: dict[str, Any] = field(default_factory=dict)
    plot: str = ""  # what the bars show: "histogram", "counts", "length", or "" for no plot
    bars: list[tuple[str, int]] = field(default_factory=list)


def _summary_exprs(col: Column) -> list[tuple[str, str]]:
    c = quote_ident(col.name)
    exprs = [("non_null", f"count({c})")]
    if col.kind == "number":
        exprs += [("min", f"min({c})"), ("max", f"max({c})"), ("mean", f"avg({c})"),
                  ("std", f"stddev_samp({c})"), ("distinct", f"approx_count_distinct({c})")]
    elif col.kind == "string":
        exprs += [("distinct", f"approx_count_distinct({c})"), ("min_length", f"min(length({c}))"),
                  ("max_length", f"max(length({c}))"), ("mean_length", f"avg(length({c}))")]
    elif col.kind in ("label", "bool"):
        exprs += [("distinct", f"approx_count_distinct({c})")]  # an exact DISTINCT here buffers every column
    elif col.kind == "list":
        exprs += [("min_length", f"min(len({c}))"), ("max_length", f"max(len({c}))")]
    elif col.kind == "temporal":
        exprs += [("min", f"min({c})"), ("max", f"max({c})")]
    return exprs


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.6g}")
    return value


def _histogram(engine: SqlEngine, expr: str, where: str, params: list, lo: float, hi: float,
               integer: bool) -> list[tuple[str, int]]:
    if lo is None or hi is None:
        return []
    lo, hi = float(lo), float(hi)
    if hi == lo:
        return [(f"{lo:g}", -1)]  # filled in by the caller with the non-null count
    width = (hi - lo) / BINS
    if integer:
        width = max(1.0, math.ceil(width))
    sql = (f"SELECT greatest(0, least(floor(({expr} - ?) / ?), {BINS - 1}))::INTEGER AS b, count(*) AS n FROM data "
           f"WHERE ({where}) AND {expr} IS NOT NULL GROUP BY b ORDER BY b")
    rows = engine.run(sql, [lo, width, *params]).to_pylist()
    counts = {r["b"]: r["n"] for r in rows}
    final = min(BINS - 1, int((hi - lo) // width))  # the bin that holds the maximum
    bars = []
    for b in range(final + 1):
        start = lo + b * width
        if integer:
            top = hi if b == final else start + width - 1
            label = f"{start:g}" if top <= start else f"{start:g}–{top:g}"
        else:
            label = f"{start:.4g}–{hi if b == final else start + width:.4g}"
        bars.append((label, counts.get(b, 0)))
    return bars


def _counts(engine: SqlEngine, col: Column, where: str, params: list) -> list[tuple[str, int]]:
    c = quote_ident(col.name)
    order = "v" if col.kind in ("label", "bool", "number") else "n DESC, v"
    sql = f"SELECT {c} AS v, count(*) AS n FROM data WHERE {where} GROUP BY v ORDER BY {order} LIMIT {TOP}"
    bars = []
    for row in engine.run(sql, params).to_pylist():
        value = row["v"]
        if col.kind == "label" and isinstance(value, int) and 0 <= value < len(col.label_names):
            value = col.label_names[value]
        bars.append(("(null)" if value is None else str(value), row["n"]))
    return bars


def _plot(engine: SqlEngine, col: Column, stats: ColumnStats, where: str, params: list) -> None:
    s = stats.summary
    c = quote_ident(col.name)
    distinct = s.get("distinct") or 0
    categorical = col.kind in ("label", "bool") or (col.kind == "string" and distinct <= CATEGORY_MAX_DISTINCT)
    small_ints = col.kind == "number" and distinct <= BINS and col.type.startswith(("int", "uint"))
    if categorical or small_ints:
        stats.plot, stats.bars = "counts", _counts(engine, col, where, params)
    elif col.kind == "number":
        integer = col.type.startswith(("int", "uint"))
        stats.plot, stats.bars = "histogram", _histogram(engine, c, where, params, s.get("min"), s.get("max"),
                                                         integer)
    elif col.kind in ("string", "list"):
        length = f"length({c})" if col.kind == "string" else f"len({c})"
        stats.plot = "length"
        stats.bars = _histogram(engine, length, where, params, s.get("min_length"), s.get("max_length"), True)
    stats.bars = [(label, s.get("non_null", 0) if n == -1 else n) for label, n in stats.bars]


def column_stats(ds: OpenDataset, engine: SqlEngine, where: str = "true",
                 params: list | None = None) -> list[ColumnStats]:
    """Statistics for every column of the rows matching `where` (SQL built by `SqlEngine.condition`)."""
    params = params or []
    exprs: list[str] = ["count(*) AS __rows"]
    for i, col in enumerate(ds.columns):
        exprs += [f"{e} AS c{i}_{key}" for key, e in _summary_exprs(col)]
    row = engine.run(f"SELECT {', '.join(exprs)} FROM data WHERE {where}", params).to_pylist()[0]
    total = row["__rows"]
    result = []
    for i, col in enumerate(ds.columns):
        summary: dict[str, Any] = {"rows": total}
        for key, _ in _summary_exprs(col):
            summary[key] = row[f"c{i}_{key}"]
        summary["nulls"] = total - summary["non_null"]
        stats = ColumnStats(col.name, col.kind, summary)
        if total:
            _plot(engine, col, stats, where, params)  # bins from the exact min and max, before rounding
        stats.summary = {key: _round(value) for key, value in summary.items()}
        result.append(stats)
    return result
