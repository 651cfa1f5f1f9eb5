"""Refusals: paths outside the allowed folders, SQL that reaches beyond the open dataset, queries that never end,
and bad files, each with a clear message; the browser keeps working with what was open before."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from databrowser import DatasetError, QueryTimeoutError, RefusedError, SourceRef, ViewSpec
from databrowser.query import SqlEngine, check_fragment


@pytest.fixture
def ref(allowed) -> SourceRef:
    pq.write_table(pa.table({"n": list(range(100)), "s": [f"row {i}" for i in range(100)]}),
                   str(allowed / "ok.parquet"))
    return SourceRef(str(allowed / "ok.parquet"))


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "secret.csv").write_text("password\nhunter2\n")
    return folder


def test_path_traversal_is_refused(browser, allowed, outside):
    with pytest.raises(RefusedError, match=r"'\.\.'"):
        browser.open("t", SourceRef(str(allowed / ".." / "secret" / "secret.csv")))
    with pytest.raises(RefusedError, match="outside the allowed folders"):
        browser.open("t", SourceRef(str(outside / "secret.csv")))
    with pytest.raises(RefusedError, match="outside the allowed folders"):
        browser.open("t", SourceRef("/etc/passwd"))


def test_symlink_escape_is_refused(browser, allowed, outside):
    (allowed / "link.csv").symlink_to(outside / "secret.csv")
    (allowed / "linkdir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RefusedError, match="resolves to .*secret.csv, outside"):
        browser.open("t", SourceRef(str(allowed / "link.csv")))
    with pytest.raises(RefusedError, match="outside the allowed folders"):
        browser.open("t", SourceRef(str(allowed / "linkdir" / "secret.csv")))


@pytest.mark.parametrize("where, message", [
    ("n IN (SELECT 1 FROM read_csv('/etc/passwd'))", "read_csv"),
    ("EXISTS (SELECT * FROM read_text('/etc/passwd'))", "read_text"),
    ("EXISTS (SELECT * FROM '/etc/passwd')", "quoted path"),
    ("1=1; ATTACH '/tmp/x.db' AS x", "';'"),
    ("n > 0) UNION SELECT 1; COPY data TO '/tmp/out.csv' --", "';'"),
    ("n > (SELECT 1 FROM glob('/etc/*'))", "glob"),
    ("s = getenv('HOME')", "getenv"),
    ("n > 0 OR (SELECT count(*) FROM duckdb_settings()) > 0", "duckdb_settings"),
])
def test_filter_that_reads_outside_is_refused(browser, ref, where, message):
    with pytest.raises(RefusedError, match=message):
        browser.page("t", ref, ViewSpec(where=where), 1, 10)
    assert browser.page("t", ref, ViewSpec(where="n < 5"), 1, 10).matching == 5  # the tab keeps working


@pytest.mark.parametrize("sql", ["ATTACH '/tmp/evil.db' AS evil", "COPY data TO '/tmp/evil.csv'",
                                 "INSTALL httpfs", "SET enable_external_access = true", "CREATE TABLE t AS SELECT 1"])
def test_statement_words_are_refused(sql):
    with pytest.raises(RefusedError, match="not allowed"):
        check_fragment(sql, "Filter")


def test_engine_itself_has_no_file_access(tmp_path):
    """Even with the text check bypassed, DuckDB cannot read files, attach, copy or change its settings."""
    engine = SqlEngine(pa.table({"n": [1, 2, 3]}))
    with pytest.raises(RefusedError, match="Only a single SELECT"):
        engine.run(f"ATTACH '{tmp_path / 'x.db'}' AS x")
    with pytest.raises(RefusedError, match="Only a single SELECT"):
        engine.run(f"COPY data TO '{tmp_path / 'x.csv'}'")
    with pytest.raises(RefusedError, match="Only a single SELECT"):
        engine.run("SELECT 1; SELECT 2")
    with pytest.raises(RefusedError, match="file system operations are disabled"):
        engine.run("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(DatasetError, match="does not exist") as info:  # no replacement scan of a path
        engine.run("SELECT * FROM '/etc/passwd'")
    assert "root:" not in str(info.value)
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "x.csv").exists()
    assert engine.run("SELECT sum(n) AS s FROM data").to_pylist() == [{"s": 6}]


def test_never_ending_query_is_interrupted(browser, ref):
    browser.timeout_s = 0.5
    browser.close_session("t")  # the engine takes the limit when it opens
    never = "n > (SELECT count(*) FROM range(1000000000000) a, range(1000000000000) b)"
    start = time.perf_counter()
    with pytest.raises(QueryTimeoutError, match="longer than 0.5 s"):
        browser.page("t", ref, ViewSpec(where=never), 1, 10)
    assert time.perf_counter() - start < 5
    assert browser.page("t", ref, ViewSpec(where="n >= 90"), 1, 10).matching == 10


@pytest.mark.parametrize("name, content, message", [
    ("broken.parquet", b"PAR1 this is not really parquet", "Could not read broken.parquet as parquet"),
    ("empty.csv", b"", "empty.csv is empty"),
    ("data.xyz", b"a,b\n1,2\n", "unknown file type '.xyz'"),
    ("bad.json", b"{\"a\": 1}\n{\"a\": \"text\"}\n{oops\n", "Could not read bad.json as json"),
    ("mixed.jsonl", b"{\"a\": 1}\n{\"a\": [1, 2]}\n", "Could not read mixed.jsonl as jsonl"),
    ("latin1.txt", "caf\xe9\n".encode("latin-1"), "Could not read latin1.txt as UTF-8"),
    ("broken.arrow", b"ARROW1\x00\x00garbage", "Could not read broken.arrow as Arrow IPC"),
])
def test_bad_files_name_the_file_and_problem(browser, allowed, ref, name, content, message):
    browser.open("t", ref)
    (allowed / name).write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        browser.open("t", SourceRef(str(allowed / name)))
    assert browser.page("t", ref, ViewSpec(), 1, 10).total == 100  # what was open still works


def test_csv_with_mixed_types_opens_as_text_with_a_note(browser, allowed):
    lines = ["n,label"] + [f"{i},x" for i in range(200_000)] + ["not a number,y"]
    (allowed / "mixed.csv").write_text("\n".join(lines) + "\n")
    ds = browser.open("t", SourceRef(str(allowed / "mixed.csv")))
    assert any("mixed.csv" in note and "read as text" in note for note in ds.notes)
    assert ds.column("n").kind == "string" and ds.num_rows == 200_001


def test_hub_id_refused_offline_names_the_dataset(browser):
    with pytest.raises(DatasetError, match="'someone/data'.*offline"):
        browser.open("t", SourceRef("hub:someone/data"))


def test_uploaded_key_cannot_escape_the_cache(browser):
    with pytest.raises(DatasetError, match="Not an upload key"):
        browser.open("t", SourceRef("upload:../../etc/passwd"))
    assert json.dumps(browser.samples())  # plain data, listable
