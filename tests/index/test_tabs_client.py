"""The History and Index tabs launched in a small Blocks, driven with gradio_client and headless Chromium."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from databrowser import DatasetBrowser
from identity import owner_of
from store import CollectionIndex, HistoryStore
from ui import history_tab, index_tab

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def record_chat(prompt: str, browser_id: str | None = None, request: gr.Request = None, *, store: HistoryStore) -> int:
    """What the chat tab will do after a reply: record the turn for its owner."""
    return store.record(owner_of(request, browser_id), "chat", prompt, f"reply to {prompt}", "fake-chat",
                        {"temperature": 0.5, "max_new_tokens": 32}, 11, {"ttft_s": 0.01, "total_s": 0.1, "tokens": 3})


@pytest.fixture(scope="module")
def app(tmp_path_factory, models_root):
    from fake_embedder import HashEmbedder
    from helpers import make_config

    tmp = tmp_path_factory.mktemp("tabs")
    config = make_config(tmp, models_root, allowed_dirs=(models_root, tmp))
    store = HistoryStore(tmp / "index", HashEmbedder())
    index = CollectionIndex(tmp / "index", HashEmbedder())
    with gr.Blocks() as demo:
        browser_id = history_tab.browser_id_state(config)
        with gr.Tab("Record"):
            prompt = gr.Textbox(label="Prompt", elem_id="rec-prompt")
            button = gr.Button("Record", elem_id="rec-button")
            entry = gr.Number(label="Recorded", elem_id="rec-entry")
        with gr.Tab("History"):
            tab = history_tab.build(history_tab.HistoryDeps(store, browser_id))
        with gr.Tab("Index"):
            index_page = index_tab.build(index_tab.IndexDeps(index, DatasetBrowser.from_config(config),
                                                             config.max_upload_mb << 20, browser_id))
        for hook in (*tab.on_load, *index_page.on_load):  # as app.py wires them
            hook.wire(demo)
        button.click(history_tab.bind(record_chat, store=store), [prompt, browser_id], entry, api_name="test_record")
    demo.queue().launch(server_port=config.port, prevent_thread_lock=True, quiet=True)
    yield SimpleNamespace(url=f"http://127.0.0.1:{config.port}/", store=store, index=index, tab=tab, tmp=tmp)
    demo.close()
    store.close()
    index.close()


def owner(client: Client) -> str:
    """The owner key of a gradio_client Client: its session (no browser id, no login)."""
    return f"session:{client.session_hash}"


def test_endpoints_have_stable_names(app):
    names = set(Client(app.url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/index_search", "/index_add_documents", "/index_add_dataset_column", "/index_create", "/index_delete",
            "/index_status", "/index_list", "/index_documents", "/index_delete_document", "/history_search",
            "/history_list", "/history_open", "/history_rerun",
            "/history_delete"} <= names
    assert not [n for n in names if n.startswith(("/lambda", "/partial"))], names


def test_index_create_add_and_search(app):
    client = Client(app.url, verbose=False)
    doc = app.tmp / "kettle.md"
    doc.write_text("A kettle boils water for tea in about three minutes.")
    other = app.tmp / "ships.txt"
    other.write_text("The lighthouse keeper watched the ships pass the rocky island.")
    client.predict("manuals", 50, 10, api_name="/index_create")
    status, _ = client.predict("manuals", [handle_file(str(doc)), handle_file(str(other))],
                               api_name="/index_add_documents")
    assert status.startswith("Added 2 documents (2 chunks)")
    assert app.index.worker.wait_idle(30)
    table, notes = client.predict("manuals", "kettle tea", "hybrid", 3, 0.25, api_name="/index_search")
    assert table["data"][0][2] == "kettle.md" and "kettle boils" in table["data"][0][4] and notes == ""
    assert table["headers"][5:] == ["keyword (BM25)", "meaning"]
    assert table["data"][0][5] >= 0 and 0 < table["data"][0][6] <= 1  # higher is better for both (BM25 ~0 in 2 docs)
    assert "ready: 2 chunks" in client.predict("manuals", api_name="/index_status")
    with pytest.raises(AppError, match="query is empty"):
        client.predict("manuals", "  ", "hybrid", 3, 0.25, api_name="/index_search")
    deck = app.tmp / "deck.pptx"
    deck.write_bytes(b"PK\x03\x04")
    with pytest.raises(AppError, match="Invalid file type"):  # gradio's own check (file_types) answers first
        client.predict("manuals", [handle_file(str(deck))], api_name="/index_add_documents")
    binary = app.tmp / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(AppError, match="Nothing was added: photo.txt: looks like a binary file"):
        client.predict("manuals", [handle_file(str(doc)), handle_file(str(binary))], api_name="/index_add_documents")
    assert app.index.info(owner(client), "manuals").documents == 2
    with pytest.raises(AppError, match="no collection named 'nope'"):
        client.predict("nope", "kettle", "hybrid", 3, 0.25, api_name="/index_search")


def test_history_is_per_client(app):
    alice, bob = Client(app.url, verbose=False), Client(app.url, verbose=False)
    entry = int(alice.predict("tell me about zebras", api_name="/test_record"))
    bob.predict("something else", api_name="/test_record")
    assert app.store.worker.wait_idle(10)
    found = alice.predict("zebras", "all", 5, api_name="/history_search")
    assert [row[0] for row in found["data"]] == [entry]
    assert bob.predict("zebras", "all", 5, api_name="/history_search")["data"] == []
    listed = alice.predict("chat", "", "", "", api_name="/history_list")
    assert [row[0] for row in listed["data"]] == [entry]
    kind, prompt, model, params = alice.predict(entry, api_name="/history_rerun")
    assert (kind, prompt, model, params) == ("chat", "tell me about zebras", "fake-chat",
                                            {"temperature": 0.5, "max_new_tokens": 32, "seed": 11})
    with pytest.raises(AppError, match=f"no history entry {entry}"):
        bob.predict(entry, api_name="/history_rerun")
    rows, message, _ = alice.predict(entry, "all", "", "", "", api_name="/history_delete")
    assert rows["data"] == [] and message == f"Entry {entry} deleted."


@pytest.mark.browser
def test_search_history_in_the_browser(app):
    if not shutil.which(CHROMIUM):
        pytest.skip("needs Debian's chromium (make browser-deps)")
    sync_api = pytest.importorskip("playwright.sync_api")
    app.store.record("user:someone-else", "chat", "unicorn secrets of another user", "no", "m", {}, 1, {})
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(app.url, wait_until="load")
            # the page-load event stores the anonymous id; record only once it is there
            page.wait_for_function("() => window.localStorage.getItem('playground-owner') !== null", timeout=15000)
            page.locator("#rec-prompt textarea").fill("where do unicorns live")
            page.locator("#rec-button").click()
            page.locator("#rec-entry input").and_(page.locator(":not([value=''])")).wait_for(timeout=15000)
            page.get_by_role("tab", name="History").click()
            app.store.worker.wait_idle(10)
            page.locator("#history-query textarea").fill("unicorns")
            page.locator("#history-search").click()
            table = page.locator("#history-table")
            sync_api.expect(table).to_contain_text("where do unicorns live", timeout=15000)
            assert "another user" not in table.inner_text(), table.inner_text()
            page.reload(wait_until="load")  # the anonymous id lives in the browser: still the same owner
            page.get_by_role("tab", name="History").click()
            page.locator("#history-list").click()
            sync_api.expect(page.locator("#history-table")).to_contain_text("reply to where do unicorns live",
                                                                            timeout=15000)
        finally:
            browser.close()


def test_open_entry_handler_shows_text_and_image(app):
    from test_history import png_bytes

    entry = app.store.record("local", "image", "a small red circle", "", "shapes-sd", {"steps": 20}, 3,
                             {"total_s": 0.6}, image_png=png_bytes())
    text, image = history_tab.open_entry(entry, None, None, store=app.store)
    assert "a small red circle" in text and "steps=20" in text and "seed 3" in text
    assert image.size == (8, 8) and image.getpixel((0, 0)) == (255, 0, 0)
    with pytest.raises(gr.Error, match="no history entry"):
        history_tab.open_entry(entry, "0123456789abcdef", None, store=app.store)


def test_index_a_dataset_column_over_the_api(app):
    client = Client(app.url, verbose=False)
    data = app.tmp / "faq.csv"
    data.write_text("id,question\n1,How do I reset my password?\n2,Where is the billing page?\n")
    client.predict("faq", 30, 5, api_name="/index_create")
    status, _ = client.predict("faq", str(data), "", "question", 100, api_name="/index_add_dataset_column")
    assert status.startswith("Added 2 documents (2 chunks)")
    with pytest.raises(AppError, match="expected a text column"):
        client.predict("faq", str(data), "", "id", 100, api_name="/index_add_dataset_column")
    with pytest.raises(AppError, match="No column 'answer'"):
        client.predict("faq", str(data), "", "answer", 100, api_name="/index_add_dataset_column")
    assert app.index.worker.wait_idle(30)
    table, _ = client.predict("faq", "billing", "keyword", 3, 0.25, api_name="/index_search")
    assert table["data"][0][2].endswith(":question#1")


def test_collections_are_per_client(app):
    alice, bob = Client(app.url, verbose=False), Client(app.url, verbose=False)
    secret = app.tmp / "secret-plan.md"
    secret.write_text("The treasure is buried under the old oak tree by the river.")
    alice.predict("plans", 50, 10, api_name="/index_create")
    alice.predict("plans", [handle_file(str(secret))], api_name="/index_add_documents")
    assert app.index.worker.wait_idle(30)
    assert [c["name"] for c in alice.predict(api_name="/index_list")] == ["plans"]
    assert "plans" not in [c["name"] for c in bob.predict(api_name="/index_list")]
    refused = "no collection named 'plans'"
    for args, endpoint in [(("plans", "treasure", "hybrid", 3, 0.25), "/index_search"),
                           (("plans", [handle_file(str(secret))]), "/index_add_documents"),
                           (("plans", ""), "/index_documents"), (("plans", 1, ""), "/index_delete_document"),
                           (("plans",), "/index_delete")]:
        with pytest.raises(AppError, match=refused):
            bob.predict(*args, api_name=endpoint)
    assert refused in bob.predict("plans", api_name="/index_status")
    bob.predict("plans", 100, 0, api_name="/index_create")  # his own, under the same name
    table, _ = bob.predict("plans", "treasure", "hybrid", 3, -1, api_name="/index_search")
    assert table["data"] == []
    table, _ = alice.predict("plans", "treasure", "hybrid", 3, 0.25, api_name="/index_search")
    assert table["data"][0][2] == "secret-plan.md"
    assert app.index.info(owner(alice), "plans").documents == 1


def test_delete_one_document_over_the_api(app):
    client = Client(app.url, verbose=False)
    keep, drop = app.tmp / "keep.txt", app.tmp / "drop.txt"
    keep.write_text("Bread rises because yeast ferments the sugar in the dough.")
    drop.write_text("Glaciers carve valleys as the ice slowly grinds over the rock.")
    client.predict("mixed", 50, 10, api_name="/index_create")
    client.predict("mixed", [handle_file(str(keep)), handle_file(str(drop))], api_name="/index_add_documents")
    assert app.index.worker.wait_idle(30)
    listed = client.predict("mixed", "", api_name="/index_documents")
    assert [row[1:4] for row in listed["data"]] == [["keep.txt", 1, 1], ["drop.txt", 1, 1]]
    dropped = listed["data"][1][0]
    rows, status = client.predict("mixed", dropped, "", api_name="/index_delete_document")
    assert [row[1] for row in rows["data"]] == ["keep.txt"]
    assert status.startswith(f"Deleted drop.txt (document {dropped}, 1 chunks).") and "ready: 1 chunks" in status
    for mode in ("keyword", "semantic"):
        table, _ = client.predict("mixed", "glaciers carve valleys ice", mode, 5, -1, api_name="/index_search")
        assert "drop.txt" not in [row[2] for row in table["data"]], mode
    with pytest.raises(AppError, match=f"no document {dropped} in collection 'mixed'"):
        client.predict("mixed", dropped, "", api_name="/index_delete_document")
    with pytest.raises(AppError, match="Pick a document first"):
        client.predict("mixed", None, "", api_name="/index_delete_document")
    status, _ = client.predict("mixed", [handle_file(str(drop))], api_name="/index_add_documents")
    assert status.startswith("Added 1 documents (1 chunks)")  # not "already indexed": the delete forgot it
