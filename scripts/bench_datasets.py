"""Benchmark the dataset browser on a generated 1,000,000-row, 6-column Parquet file; prints JSON.

    .venv/bin/python scripts/bench_datasets.py [--rows 1000000] [--keep DIR]

Targets (issue 4): open <= 2 s; page p95 <= 150 ms (first, middle, last and random pages); substring search over
the text column <= 1.5 s; a filter with sort <= 1.5 s; statistics for all columns <= 5 s; resident memory growth
<= 500 MB. Every figure is printed with its target and whether it was met.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from databrowser import DatasetBrowser, SourceRef, ViewSpec
from databrowser.table import cell_text

WORDS = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
         "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "ad", "minim", "veniam",
         "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip", "ex", "ea", "commodo",
         "consequat", "duis", "aute", "irure", "in", "reprehenderit", "voluptate", "velit", "esse", "cillum",
         "fugiat", "nulla", "pariatur"]


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write `rows` rows: id, value (float), count (int), category (8 values), flag (bool), text (~200 chars)."""
    rng = np.random.default_rng(seed)
    pool = []
    for i in range(20_000):  # distinct ~200-character sentences, drawn with replacement
        words = rng.choice(WORDS, size=40)
        pool.append(" ".join(words)[:196] + f" {i:03d}"[-4:])
    pool_arr = pa.array(pool, pa.string())
    categories = pa.array([f"category_{c}" for c in "abcdefgh"], pa.string())
    with pq.ParquetWriter(str(path), pa.schema([
        ("id", pa.int64()), ("value", pa.float64()), ("count", pa.int32()), ("category", pa.string()),
        ("flag", pa.bool_()), ("text", pa.string())])) as writer:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            writer.write_table(pa.table({
                "id": pa.array(np.arange(start, start + n, dtype=np.int64)),
                "value": pa.array(rng.normal(0, 1, n)),
                "count": pa.array(rng.integers(0, 1000, n, dtype=np.int32)),
                "category": categories.take(pa.array(rng.integers(0, 8, n))),
                "flag": pa.array(rng.random(n) < 0.3),
                "text": pool_arr.take(pa.array(rng.integers(0, len(pool), n))),
            }))


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", help="folder to write the Parquet file and cache into (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-datasets-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, args.rows)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, rows_wanted: int) -> None:
    """Generate (unless present), then time every operation and print the JSON report."""
    data = work / "bench.parquet"
    if not data.exists():
        generate(data, rows_wanted)
    proc = psutil.Process(os.getpid())
    rss0 = proc.memory_info().rss
    peak = rss0

    def sample():
        nonlocal peak
        peak = max(peak, proc.memory_info().rss)

    browser = DatasetBrowser(work / "cache", [work])
    ref = SourceRef(str(data))
    open_s, ds = timed(lambda: browser.open("bench", ref))
    sample()
    rows = ds.num_rows
    page_ms = []
    rng = np.random.default_rng(1)
    pages = max(1, rows // 100)
    for page in [1, pages // 2, pages] * 10 + list(rng.integers(1, pages + 1, 30)):
        t, pg = timed(lambda page=page: browser.page("bench", ref, ViewSpec(), int(page), 100))
        t2, _ = timed(lambda pg=pg: [[cell_text(v, c, 300) for v, c in zip(r.values(), ds.columns, strict=False)]
                                     for r in pg.rows.to_pylist()])
        page_ms.append((t + t2) * 1000)
    sample()
    search = ViewSpec(search="voluptate velit esse")
    search_s, ids = timed(lambda: browser.view("bench", ref, search))
    search_rows = len(ids)
    sample()
    flt = ViewSpec(where="value > 1.5 AND category IN ('category_a', 'category_c') AND flag",
                   order_by="count DESC, value")
    filter_s, fids = timed(lambda: browser.view("bench", ref, flt))
    filtered_page_s, _ = timed(lambda: browser.page("bench", ref, flt, 5, 100))
    sample()
    stats_s, stats = timed(lambda: browser.stats("bench", ref, ViewSpec()))
    sample()
    p95 = float(np.percentile(page_ms, 95))
    growth_mb = (peak - rss0) / 2**20
    result = {
        "rows": rows, "columns": len(ds.columns), "parquet_mb": round(data.stat().st_size / 2**20, 1),
        "cpu_count": os.cpu_count(),
        "open_s": {"value": round(open_s, 3), "target": 2.0, "ok": open_s <= 2.0},
        "page_p95_ms": {"value": round(p95, 1), "target": 150, "ok": p95 <= 150,
                        "median_ms": round(statistics.median(page_ms), 1), "pages_timed": len(page_ms)},
        "search_s": {"value": round(search_s, 3), "target": 1.5, "ok": search_s <= 1.5, "matches": search_rows},
        "filter_sort_s": {"value": round(filter_s, 3), "target": 1.5, "ok": filter_s <= 1.5,
                          "matches": len(fids), "page_after_filter_ms": round(filtered_page_s * 1000, 1)},
        "stats_all_columns_s": {"value": round(stats_s, 3), "target": 5.0, "ok": stats_s <= 5.0,
                                "columns": len(stats)},
        "rss_growth_mb": {"value": round(growth_mb, 1), "target": 500, "ok": growth_mb <= 500},
    }
    result["all_ok"] = all(v["ok"] for v in result.values() if isinstance(v, dict))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
