"""Hypothesis properties: parameter parsing, the SQL filter checker, chunking and PNG-metadata restore."""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from databrowser.query import SqlEngine, ViewSpec
from engines.image_meta import RESTORED, png_bytes, read_png_meta
from engines.image_params import IMAGE_LIMITS, SCHEDULERS, parse_image_params
from engines.params import LIMITS, parse_params
from errors import InvalidInput, UserError
from store.chunking import MAX_CHUNK_WORDS, chunk_text

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# anything a form, a gradio_client call or a JSON body could hand a parser, and then some
ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400), st.floats(),
    st.text(max_size=12), st.from_regex(r"\s*-?[0-9_]{0,6}(\.[0-9]*)?(e-?[0-9]{1,4})?\s*", fullmatch=True),
    st.just("a\ud800"), st.decimals(), st.fractions(), st.complex_numbers(), st.binary(max_size=4),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


@FAST
@given(name=st.sampled_from(sorted(LIMITS)), value=ANYTHING, limit=st.integers(1, 100_000))
def test_a_generation_parameter_parses_within_its_limits_or_is_refused_by_name(name, value, limit):
    try:
        params = parse_params(limit, **{name: value})
    except InvalidInput as exc:
        assert name in str(exc)
        return
    low, high, kind = LIMITS[name]
    parsed = getattr(params, name)
    assert low <= parsed <= (limit if name == "max_new_tokens" else high)
    assert isinstance(parsed, kind) and not isinstance(parsed, bool)


@FAST
@given(name=st.sampled_from([*IMAGE_LIMITS, "scheduler", "prompt"]), value=ANYTHING)
def test_an_image_setting_parses_within_its_limits_or_is_refused_by_name(name, value):
    try:
        params = parse_image_params(**{"prompt": "a red circle", name: value})
    except InvalidInput as exc:
        assert name in str(exc)
        return
    for key, (low, high, kind) in IMAGE_LIMITS.items():
        parsed = getattr(params, key)
        assert low <= parsed <= high and isinstance(parsed, kind) and not isinstance(parsed, bool), key
    assert params.width % 8 == 0 and params.height % 8 == 0
    assert params.scheduler in SCHEDULERS and params.prompt.strip()


# -- the SQL filter checker ---------------------------------------------------------------------------------------
SQL_WORDS = ["n", "s", "__rowid", "data", "1", "0", "-1", "'x'", "''", "'", '"', '"n"', '"s"', "(", ")", ",", ";",
             "--", "/*", "*/", "=", "<>", "<", ">", "+", "*", "AND", "OR", "NOT", "IS", "NULL", "IN", "LIKE", "'%'",
             "SELECT", "FROM", "WHERE", "UNION", "ALL", "EXISTS", "CASE", "WHEN", "THEN", "ELSE", "END", "ASC", "DESC",
             "NULLS", "LAST", "::", "VARCHAR", "INTEGER", "length", "lower", "contains", "abs", "count", "max", "?",
             "$1", "$$", "\\", "\n", "read_text", "read_csv", '"read_text"', "main.read_text", "glob", "getenv",
             "'HOME'", "query", "current_setting", "'threads'", "COPY", "TO", "ATTACH", "SET", "PRAGMA", "INSTALL",
             "httpfs", "{secret}", "'{secret}'", "'{out}'", "range(3)", "(SELECT 1)", "(SELECT count(*) FROM data)"]
READERS = ["read_text", "READ_TEXT", "Read_Text", '"read_text"', "main.read_text", '"main"."read_text"',
           "system.main.read_text", "read_text /**/", "read_csv", "read_csv_auto", "read_blob", "read_json",
           "read_json_auto", "read_parquet", "sniff_csv", "glob", "parquet_metadata", "query_table", "read_ndjson"]


@pytest.fixture(scope="module")
def sql(tmp_path_factory):
    """An engine over 50 rows, a secret file no filter may read and a path no filter may write."""
    folder = tmp_path_factory.mktemp("sql")
    secret, out = folder / "secret.txt", folder / "out.csv"
    secret.write_text("SECRET-42\n")
    table = pa.table({"n": list(range(50)), "s": [f"row {i}" for i in range(50)]})
    engine = SqlEngine(table, timeout_s=5.0)
    yield engine, secret, out
    engine.close()


def _fill(text: str, secret: Path, out: Path) -> str:
    return text.replace("{secret}", str(secret)).replace("{out}", str(out))


def _unchanged(engine: SqlEngine, out: Path) -> None:
    """Nothing a filter ran changed the connection, its data or the disk."""
    con = engine._con
    assert con.execute("SELECT current_setting('enable_external_access')").fetchall()[0][0] is False
    assert con.execute("SELECT current_setting('lock_configuration')").fetchall()[0][0] is True
    assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM data").fetchall()[0][0] == 50
    assert not out.exists()
    assert engine.select_rows(ViewSpec(where="n < 3"), ["s"]).tolist() == [0, 1, 2]  # still usable


@settings(max_examples=300, deadline=None)
@given(where=st.lists(st.sampled_from(SQL_WORDS) | st.text(max_size=4), max_size=10).map(" ".join),
       order=st.lists(st.sampled_from(SQL_WORDS) | st.text(max_size=3), max_size=4).map(" ".join))
def test_a_random_filter_returns_rows_of_the_dataset_or_a_refusal_and_changes_nothing(sql, where, order):
    engine, secret, out = sql
    try:
        rows = engine.select_rows(ViewSpec(where=_fill(where, secret, out), order_by=_fill(order, secret, out)), ["s"])
    except UserError:  # the app's refusals (RefusedError, DatasetError, QueryTimeoutError, InvalidInput)
        rows = None
    if rows is not None:
        assert rows.dtype == np.int64 and len(set(rows.tolist())) == len(rows)
        assert all(0 <= r < 50 for r in rows.tolist())
    _unchanged(engine, out)


@settings(max_examples=150, deadline=None)
@given(reader=st.sampled_from(READERS), shape=st.sampled_from([
    "EXISTS (SELECT * FROM {f}('{secret}'))", "(SELECT count(*) FROM {f}('{secret}')) > 0",
    "s IN (SELECT content FROM {f}('{secret}'))", "n < (SELECT length(content) FROM {f}('{secret}'))",
    "(SELECT content FROM {f}('{secret}')) LIKE 'SECRET%'"]), space=st.sampled_from(["", " ", "\n", "/**/"]))
def test_no_spelling_of_a_file_reader_gets_through_a_filter(sql, reader, shape, space):
    engine, secret, out = sql
    where = _fill(shape.replace("{f}", reader + space), secret, out)
    with pytest.raises(UserError):
        engine.select_rows(ViewSpec(where=where), ["s"])
    _unchanged(engine, out)


# -- chunking -------------------------------------------------------------------------------------------------------
WORDISH = st.text(alphabet=st.sampled_from(list("ab.,é语 \n\t\u00a0\u2003\x1c")) | st.characters(), max_size=300)


@settings(max_examples=300, deadline=None)
@given(text=WORDISH, size=st.integers(1, 40), data=st.data())
def test_chunks_cover_the_words_in_order_with_the_overlap_asked(text, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    chunks = chunk_text(text, size, overlap)
    words = re.findall(r"\S+", text)
    step = size - overlap
    starts = [0] if words else []
    while starts and starts[-1] + size < len(words):
        starts.append(starts[-1] + step)
    assert [re.findall(r"\S+", c) for c in chunks] == [words[i:i + size] for i in starts]
    position = 0
    for chunk in chunks:  # each chunk is the original text between its first and last word, in order
        found = text.find(chunk, position)
        assert found >= position and chunk == chunk.strip()
        position = found + 1
    assert [w for c in chunks[:1] for w in c.split()[:1]] == words[:1]
    assert not chunks or re.findall(r"\S+", chunks[-1])[-1] == words[-1]


@given(size=st.integers(-5, MAX_CHUNK_WORDS + 5), overlap=st.integers(-5, MAX_CHUNK_WORDS + 5))
def test_chunk_sizes_out_of_range_are_refused_by_name(size, overlap):
    assume(not (1 <= size <= MAX_CHUNK_WORDS and 0 <= overlap < size))
    with pytest.raises(InvalidInput, match="chunk size|overlap"):
        chunk_text("some words here", size, overlap)


# -- PNG metadata -----------------------------------------------------------------------------------------------------
def _setting(name: str):
    low, high, kind = IMAGE_LIMITS[name]
    if kind is int:
        return st.integers(int(low), int(high))
    return st.floats(low, high, allow_nan=False)


PROMPT = (st.text(min_size=1, max_size=60) | st.just("a\ud800 cat") | st.just("line one\nNegative prompt: x")).filter(
    lambda p: p.strip())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=PROMPT, negative=st.text(max_size=30), steps=_setting("steps"), guidance=_setting("guidance_scale"),
       seed=_setting("seed"), width=_setting("width"), height=_setting("height"),
       scheduler=st.sampled_from(sorted(SCHEDULERS)), rescale=_setting("guidance_rescale"),
       model=st.text(max_size=40))
def test_settings_saved_in_a_png_come_back_the_same(prompt, negative, steps, guidance, seed, width, height, scheduler,
                                                   rescale, model):
    from ui.image_tab import SETTINGS, restore

    params = parse_image_params(prompt, negative, steps, guidance, seed, width, height, 1, scheduler, rescale)
    meta = params.to_dict() | {"model": model}
    png = png_bytes(Image.new("RGB", (8, 8)), meta)
    expected = {k: meta[k] for k in RESTORED}
    assert read_png_meta(Image.open(io.BytesIO(png))) == expected
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.png"
        path.write_bytes(png)
        controls = dict(zip(("prompt", *SETTINGS), restore(str(path)), strict=True))
    assert {k: v for k, v in controls.items() if k in RESTORED} == expected
