"""History recording as the tabs call it, per-owner isolation, filters, re-run fields, restart."""

from __future__ import annotations

import io
import json
import threading
import time
from types import SimpleNamespace

import pytest
from PIL import Image

from identity import owner_of
from store import HistoryStore

PARAMS = {"temperature": 0.7, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.1, "max_new_tokens": 64}


def png_bytes(color=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def record_three(store: HistoryStore, owner: str = "browser:aaaaaaaaaaaa") -> list[int]:
    return [
        store.record(owner, "chat", "What is the capital of France?", "The capital of France is Paris.",
                     "HuggingFaceTB/SmolLM2-135M-Instruct", PARAMS, 42, {"ttft_s": 0.1, "total_s": 1.2, "tokens": 9}),
        store.record(owner, "completion", "Once upon a time", " there was a dragon who loved books.",
                     "tiny-llama", PARAMS, 7, {"total_s": 0.5, "tokens": 8}),
        store.record(owner, "image", "a small red circle", "", "shapes-sd", {"steps": 20, "guidance": 5.0}, 3,
                     {"total_s": 0.6}, image_png=png_bytes()),
    ]


def test_record_and_list_newest_first(history):
    ids = record_three(history)
    entries = history.list("browser:aaaaaaaaaaaa")
    assert [e.id for e in entries] == ids[::-1]
    chat = history.get("browser:aaaaaaaaaaaa", ids[0])
    assert (chat.kind, chat.model, chat.seed, chat.params, chat.timings["tokens"]) == (
        "chat", "HuggingFaceTB/SmolLM2-135M-Instruct", 42, PARAMS, 9)
    assert chat.output == "The capital of France is Paris."


def test_image_saved_as_png_with_its_parameters(history):
    ids = record_three(history)
    image = history.get("browser:aaaaaaaaaaaa", ids[2])
    with Image.open(image.image_path) as img:
        assert img.format == "PNG" and img.getpixel((0, 0)) == (255, 0, 0)
        meta = json.loads(img.text["parameters"])
    assert meta == {"prompt": "a small red circle", "model": "shapes-sd", "seed": 3, "steps": 20, "guidance": 5.0}
    with pytest.raises(ValueError, match="not a readable image"):
        history.record("o", "image", "p", "", "m", {}, 1, {}, image_png=b"not a png")
    assert history.count() == 3  # nothing half-written


def test_filters_by_kind_model_and_date(history):
    ids = record_three(history)
    owner = "browser:aaaaaaaaaaaa"
    assert [e.id for e in history.list(owner, kind="completion")] == [ids[1]]
    assert [e.id for e in history.list(owner, model="shapes-sd")] == [ids[2]]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len(history.list(owner, date_from=today, date_to=today)) == 3
    assert history.list(owner, date_to="2000-01-01") == []
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        history.list(owner, date_from="yesterday")
    with pytest.raises(ValueError, match="kind"):
        history.list(owner, kind="video")


def test_each_owner_sees_only_their_own(history):
    mine = record_three(history, "user:alice")
    theirs = history.record("user:bob", "chat", "bob's secret plan about Paris", "ok", "m", {}, 1, {})
    assert {e.id for e in history.list("user:alice")} == set(mine)
    assert [e.id for e in history.list("user:bob")] == [theirs]
    with pytest.raises(LookupError):
        history.get("user:alice", theirs)
    assert history.delete("user:alice", theirs) is False and history.count("user:bob") == 1
    history.worker.wait_idle(10)
    assert theirs not in {e.id for e, _ in history.search("user:alice", "secret plan Paris")}
    assert [e.id for e, _ in history.search("user:bob", "secret plan")] == [theirs]


def test_search_rerun_and_delete(history):
    ids = record_three(history)
    owner = "browser:aaaaaaaaaaaa"
    assert history.worker.wait_idle(10)
    assert history.search(owner, "dragon books")[0][0].id == ids[1]
    assert history.search(owner, "capital France", kind="chat")[0][0].id == ids[0]
    kind, prompt, model, params = history.rerun_fields(owner, ids[0])
    assert (kind, prompt, model) == ("chat", "What is the capital of France?", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert params == {**PARAMS, "seed": 42}
    image_path = history.get(owner, ids[2]).image_path
    assert history.delete(owner, ids[2]) is True
    assert not __import__("os").path.exists(image_path)
    assert [e.id for e in history.list(owner)] == ids[1::-1]


def test_record_is_thread_safe_and_cheap(history):
    def worker(n: int) -> None:
        for i in range(20):
            history.record(f"user:{n}", "chat", f"question {i}", f"answer {i}", "m", PARAMS, i, {})

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    assert history.count() == 160 and all(history.count(f"user:{n}") == 20 for n in range(8))
    assert elapsed / 160 < 0.05, f"record took {elapsed / 160 * 1000:.1f} ms each"
    assert history.worker.wait_idle(30)
    assert history.db.read().execute("SELECT count(*) FROM history WHERE vec IS NULL").fetchone()[0] == 0


def test_restart_keeps_everything(tmp_path, embedder):
    store = HistoryStore(tmp_path / "h", embedder)
    ids = record_three(store)
    store.worker.wait_idle(10)
    store.close()
    reopened = HistoryStore(tmp_path / "h", embedder)
    try:
        assert [e.id for e in reopened.list("browser:aaaaaaaaaaaa")] == ids[::-1]
        assert reopened.search("browser:aaaaaaaaaaaa", "dragon")[0][0].id == ids[1]
        assert reopened.db.integrity() == "ok"
    finally:
        reopened.close()


def test_owner_rule():
    assert owner_of(SimpleNamespace(username="alice", session_hash="s1"), "0123456789abcdef") == "user:alice"
    assert owner_of(SimpleNamespace(username=None, session_hash="s1"), "0123456789abcdef") == \
        "browser:0123456789abcdef"
    assert owner_of(SimpleNamespace(username=None, session_hash="s1"), "") == "session:s1"
    assert owner_of(SimpleNamespace(username=None, session_hash="s1"), "x; DROP") == "session:s1"
    assert owner_of(None, None) == "local"


def test_bad_kind_is_refused(history):
    with pytest.raises(ValueError, match="kind must be one of"):
        history.record("o", "video", "p", "o", "m", {}, None, {})
