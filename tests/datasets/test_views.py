"""Paging, search, filter and sort, statistics and export on small generated data, checked against Python."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from databrowser import DatasetError, SourceRef, ViewSpec

N = 1_003


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    words = ["apple", "banana", "cherry", "damson", "elder"]
    return [{"n": int(i), "x": float(rng.normal()), "cat": words[i % 5], "flag": bool(i % 3 == 0),
             "text": " ".join(rng.choice(words, size=1 + i % 7)) + (" Needle" if i % 97 == 0 else "")}
            for i in range(N)]


@pytest.fixture
def ref(rows, allowed) -> SourceRef:
    pq.write_table(pa.Table.from_pylist(rows), str(allowed / "gen.parquet"), row_group_size=100)
    return SourceRef(str(allowed / "gen.parquet"))


def test_paging_first_middle_last_and_row_jump(browser, ref, rows):
    first = browser.page("t", ref, ViewSpec(), 1, 100)
    assert (first.page, first.pages, first.matching, first.total) == (1, 11, N, N)
    assert first.rows.to_pylist() == rows[:100] and first.row_ids.tolist() == list(range(100))
    middle = browser.page("t", ref, ViewSpec(), 6, 100)
    assert middle.rows.to_pylist() == rows[500:600]
    last = browser.page("t", ref, ViewSpec(), 11, 100)
    assert last.rows.to_pylist() == rows[1000:] and len(last.row_ids) == 3
    assert browser.page("t", ref, ViewSpec(), 99, 100).page == 11  # past the end: clamped to the last page
    jump = browser.page("t", ref, ViewSpec(), 1, 25, row=260)
    assert jump.page == 11 and 260 in jump.row_ids.tolist()
    with pytest.raises(DatasetError, match="out of range"):
        browser.page("t", ref, ViewSpec(), 1, 100, row=N)
    with pytest.raises(DatasetError, match="between 1 and 1000"):
        browser.page("t", ref, ViewSpec(), 1, 5000)


def test_search_is_case_insensitive_over_text_columns(browser, ref, rows):
    page = browser.page("t", ref, ViewSpec(search="needle"), 1, 100)
    expected = [r for r in rows if "needle" in r["text"].lower()]
    assert page.matching == len(expected) == 11
    assert page.rows.to_pylist() == expected
    assert browser.page("t", ref, ViewSpec(search="CHERRY"), 1, 10).matching == sum(
        "cherry" in (r["cat"] + " " + r["text"]).lower() for r in rows)
    assert browser.page("t", ref, ViewSpec(search="no such words"), 1, 10).matching == 0


def test_filter_and_sort_over_whole_dataset(browser, ref, rows):
    spec = ViewSpec(where="cat IN ('apple', 'cherry') AND x > 0 AND flag", order_by="x DESC")
    page = browser.page("t", ref, spec, 1, 1000)
    expected = sorted((r for r in rows if r["cat"] in ("apple", "cherry") and r["x"] > 0 and r["flag"]),
                      key=lambda r: -r["x"])
    assert page.matching == len(expected) > 20
    assert page.rows.to_pylist() == expected
    combined = browser.page("t", ref, ViewSpec(search="needle", where="n > 500", order_by="n DESC"), 1, 100)
    assert [r["n"] for r in combined.rows.to_pylist()] == [n for n in range(N - 1, 500, -1) if n % 97 == 0]


def test_bad_filter_gives_sql_message(browser, ref):
    with pytest.raises(DatasetError, match="SQL error.*no_such_column"):
        browser.page("t", ref, ViewSpec(where="no_such_column > 3"), 1, 10)
    assert browser.page("t", ref, ViewSpec(), 1, 10).matching == N  # still works afterwards


def test_stats_per_kind(browser, ref, rows):
    stats = {s.name: s for s in browser.stats("t", ref, ViewSpec())}
    x = stats["x"]
    assert x.plot == "histogram" and sum(n for _, n in x.bars) == N
    assert x.summary["min"] == pytest.approx(min(r["x"] for r in rows), rel=1e-5)
    assert x.summary["mean"] == pytest.approx(np.mean([r["x"] for r in rows]), rel=1e-4)
    cat = stats["cat"]
    assert cat.plot == "counts" and dict(cat.bars) == {w: sum(r["cat"] == w for r in rows) for w in
                                                       ("apple", "banana", "cherry", "damson", "elder")}
    flag = stats["flag"]
    assert dict(flag.bars) == {"False": sum(not r["flag"] for r in rows), "True": sum(r["flag"] for r in rows)}
    text = stats["text"]
    assert text.plot == "length" and sum(n for _, n in text.bars) == N
    assert text.summary["max_length"] == max(len(r["text"]) for r in rows)
    filtered = {s.name: s for s in browser.stats("t", ref, ViewSpec(where="cat = 'apple'"))}
    assert filtered["cat"].bars == [("apple", sum(r["cat"] == "apple" for r in rows))]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_current_selection(browser, ref, rows, fmt):
    spec = ViewSpec(where="n % 10 = 0", order_by="n DESC")
    path = browser.export("t", ref, spec, fmt)
    expected = sorted((r for r in rows if r["n"] % 10 == 0), key=lambda r: -r["n"])
    if fmt == "parquet":
        got = pq.read_table(str(path)).to_pylist()
    elif fmt == "csv":
        got = pacsv.read_csv(str(path)).to_pylist()
    else:
        got = [json.loads(line) for line in path.read_text().splitlines()]
    assert path.name == "gen.parquet-101rows" + {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}[fmt]
    assert got == expected


def test_export_images_as_json_text(browser):
    path = browser.export("t", SourceRef("sample:digits"), ViewSpec(where="label = 4"), "jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 181 and all(r["label"] == 4 for r in records)
    assert records[0]["image"].startswith("data:image/png;base64,")


def test_sessions_are_bounded_lru_and_reopen(browser, allowed, ref):
    for i in range(3):
        (allowed / f"f{i}.txt").write_text(f"file {i}\n")
    refs = [SourceRef(str(allowed / f"f{i}.txt")) for i in range(3)]
    for r in refs:
        browser.open("s1", r)
    assert browser.open_count("s1") == 2 and not browser.is_open("s1", refs[0])  # per_session=2
    for s in ("s2", "s3"):
        browser.open(s, refs[0])
        browser.open(s, refs[1])
    assert browser.open_count() == 4  # max_open=4
    # an evicted dataset reopens from its source on the next request
    assert browser.page("s1", refs[0], ViewSpec(), 1, 10).rows.to_pylist() == [{"line": 1, "text": "file 0"}]
    browser.close_session("s1")
    assert browser.open_count("s1") == 0
