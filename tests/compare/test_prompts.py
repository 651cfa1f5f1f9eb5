"""Prompts from a dataset: columns by name, the row limit, empty prompts skipped, clear refusals."""

from __future__ import annotations

import pyarrow as pa
import pytest

from compare.prompts import PromptSourceError, read_items
from databrowser.table import OpenDataset


def dataset(rows: dict) -> OpenDataset:
    return OpenDataset("qa.jsonl", pa.table(rows))


def test_rows_become_prompts_with_references_up_to_the_limit():
    ds = dataset({"q": ["a?", "", None, "d?"], "ref": ["A", "B", "C", None]})
    assert read_items(ds, "q", "ref", limit=4) == ([("a?", "A"), ("d?", None)], 2)
    assert read_items(ds, "q", "", limit=1) == ([("a?", None)], 0)


@pytest.mark.parametrize("rows, column, reference, limit, words", [
    ({"q": ["a?"]}, "prompt", "", 5, "qa.jsonl has no prompt column 'prompt'; its columns are q"),
    ({"q": ["a?"]}, "q", "answer", 5, "no reference column 'answer'"),
    ({"q": pa.array([], pa.string())}, "q", "", 5, "qa.jsonl has no rows"),
    ({"q": ["", None]}, "q", "", 5, "every 'q' cell in the first 2 rows of qa.jsonl is empty"),
    ({"q": ["a?"]}, "q", "", 0, "row limit must be between 1 and 5000, got 0"),
])
def test_impossible_requests_are_refused_by_name(rows, column, reference, limit, words):
    with pytest.raises(PromptSourceError, match=words):
        read_items(dataset(rows), column, reference, limit)
