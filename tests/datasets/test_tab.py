"""The tab's handlers called directly, and the stable API driven by gradio_client against a launched app."""

from __future__ import annotations

import copy
from pathlib import Path

import gradio as gr
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ui import datasets_tab as tab


def _state_after_open(browser, source: str) -> tuple:
    handler = tab.user_errors(tab.open_dataset)
    return handler(source, "", "", False, 100, copy.deepcopy(tab.EMPTY_STATE), None, browser=browser)


def test_open_page_filter_select_send(browser):
    state, status, schema, _, viewer, table, gallery, info, page = _state_after_open(browser, "sample:digits")
    assert copy.deepcopy(state) == state and state["ref"]["source"] == "sample:digits"
    assert "1,797 rows" in status and list(schema["column"]) == ["image", "label"] and viewer.visible
    assert list(table.value["headers"]) == ["#", "image", "label"] and len(table.value["data"]) == 100
    assert table.value["data"][0][1].startswith('<img src="data:image/png;base64,')
    assert len(gallery) == 100 and gallery[0][1] == "#0 · 0 (0)"
    assert info.startswith("Rows 1–100 of 1,797") and page == 1
    _, _, info2, page2 = tab.show_page(1, 100, state, None, browser=browser, step=1)
    assert page2 == 2 and info2.startswith("Rows 101–200")
    state2, table3, _, info3, _ = tab.apply_view("", "label = 9", "", 100, state, None, browser=browser)
    assert state2["spec"]["where"] == "label = 9" and "of 180 matching" in info3
    row = table3.value["data"][0]
    evt = gr.SelectData(None, {"index": [0, 2], "value": row[2], "row_value": row, "col_value": [], "selected": True})
    text, image = tab.select_cell(state2, evt, None, browser=browser)
    assert text == "9 (9)" and image is None
    evt = gr.SelectData(None, {"index": [0, 1], "value": row[1], "row_value": row, "col_value": [], "selected": True})
    assert tab.select_cell(state2, evt, None, browser=browser)[1].size == (64, 64)
    assert tab.send_cell("O Romeo") == "O Romeo"
    with pytest.raises(gr.Error, match="Select a cell"):
        tab.send_cell("")


def test_errors_become_gr_error_and_state_is_kept(browser, allowed):
    with pytest.raises(gr.Error, match="outside the allowed folders"):
        _state_after_open(browser, "/etc/passwd")
    state = _state_after_open(browser, "sample:shakespeare")[0]
    with pytest.raises(gr.Error, match="ATTACH is not allowed|';' is not allowed"):
        tab.user_errors(tab.apply_view)("", "1=1; ATTACH 'x'", "", 100, state, None, browser=browser)
    with pytest.raises(gr.Error, match="No dataset is open"):
        tab.show_page(1, 100, copy.deepcopy(tab.EMPTY_STATE), None, browser=browser)
    table = tab.show_page(3, 100, state, None, browser=browser)[0]  # the open dataset still pages
    assert table.value["data"][0][0] == 200


def test_stats_and_export_handlers(browser):
    state = _state_after_open(browser, "sample:shakespeare")[0]
    state = tab.apply_view("", "edition = 'Gutenberg'", "", 100, state, None, browser=browser)[0]
    summary, choice, plot = tab.compute_stats(state, None, browser=browser)
    assert list(summary["column"]) == ["play", "edition", "line", "text"]
    assert choice.value == "play" and plot.value["data"]
    assert dict(zip(summary["column"], summary["non-null"], strict=False))["edition"] == "147031"
    path = Path(tab.export_view("parquet", state, None, browser=browser))
    assert pq.read_metadata(str(path)).num_rows == 147031


def test_api_with_gradio_client(app, allowed):
    from gradio_client import Client

    pq.write_table(pa.table({"n": list(range(500)), "word": ["alpha", "beta"] * 250}), str(allowed / "w.parquet"))
    client = Client(app, verbose=False)
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/datasets_list", "/datasets_open", "/datasets_page", "/datasets_search", "/datasets_filter",
            "/datasets_stats", "/datasets_export"} <= names
    listing = client.predict(api_name="/datasets_list")
    assert [s["source"] for s in listing["samples"]][:2] == ["sample:shakespeare", "sample:digits"]
    opened = client.predict(str(allowed / "w.parquet"), api_name="/datasets_open")
    assert opened["rows"] == 500 and [c["name"] for c in opened["columns"]] == ["n", "word"]
    page = client.predict(str(allowed / "w.parquet"), page=5, page_size=100, api_name="/datasets_page")
    assert page["row_ids"][0] == 400 and page["rows"][0] == {"n": 400, "word": "alpha"}
    found = client.predict("sample:shakespeare", "wherefore art thou romeo", api_name="/datasets_search")
    assert found["matching_rows"] >= 1 and all(r["play"] == "Romeo And Juliet" for r in found["rows"])
    filtered = client.predict(str(allowed / "w.parquet"), where="word = 'beta' AND n < 10", order_by="n DESC",
                              api_name="/datasets_filter")
    assert filtered["matching_rows"] == 5 and [r["n"] for r in filtered["rows"]] == [9, 7, 5, 3, 1]
    stats = client.predict(str(allowed / "w.parquet"), api_name="/datasets_stats")
    assert dict((c["name"], c["bars"]) for c in stats["columns"])["word"] == [["alpha", 250], ["beta", 250]]
    exported = client.predict(str(allowed / "w.parquet"), "", "n >= 490", "n DESC", "csv", "", "",
                              api_name="/datasets_export")
    lines = Path(exported).read_text().splitlines()
    assert lines[0] == '"n","word"' and lines[1] == '499,"beta"' and len(lines) == 11
    with pytest.raises(Exception, match="read_csv"):
        client.predict(str(allowed / "w.parquet"), where="n IN (SELECT 1 FROM read_csv('/etc/passwd'))",
                       api_name="/datasets_filter")
    with pytest.raises(Exception, match="outside the allowed folders"):
        client.predict("/etc/passwd", api_name="/datasets_open")


def test_unexpected_errors_are_logged_and_shown_briefly(browser, caplog):
    def broken(state: dict, *, browser) -> str:
        raise KeyError("boom")

    import functools
    import re

    with pytest.raises(gr.Error, match=r"broken failed\. Internal error \(id (\w+)\).*keeps what was open") as info:
        tab.user_errors(functools.partial(broken, browser=browser))({})
    error_id = re.search(r"id (\w+)", str(info.value)).group(1)
    assert f"internal error {error_id}" in caplog.text and "KeyError: 'boom'" in caplog.text  # the log has the why
