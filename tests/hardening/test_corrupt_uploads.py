"""Damaged files of every accepted type are refused with the app's own message (never a traceback, never
"Internal error"), and the app keeps working: the next good file of the same kind goes through."""

from __future__ import annotations

import functools
import io
import json
import shutil
from pathlib import Path

import gradio as gr
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gradio_client import Client, handle_file
from helpers import fake_services, make_config, start_app
from PIL import Image

from engines.image_meta import png_bytes


@pytest.fixture(scope="module")
def app(tmp_path_factory, models_root, tiny_llama):
    """The whole app on a real (lazy) text engine, so the Models tab really reads model folders."""
    from engines.cache import ModelCache
    from engines.device import choose_placement
    from engines.resolve import HubProbe, ModelResolver
    from engines.text import TextEngine

    config = make_config(tmp_path_factory.mktemp("corrupt-app"), models_root)
    resolver = ModelResolver(config.readable_dirs, config.models_dir, HubProbe(offline=True))
    engine = TextEngine(ModelCache(max_models=2), resolver, choose_placement("cpu", "float32"), max_batch=0)
    services = fake_services(config, engine)
    demo, url = start_app(services)
    yield services, Client(url, verbose=False)
    demo.close()


def refusal(call) -> str:
    """The message a person sees for a refused call; fails on an internal error or a success."""
    with pytest.raises(Exception) as caught:  # gradio_client's AppError, or gr.Error from a handler
        call()
    message = str(caught.value)
    assert "Internal error" not in message and "Traceback" not in message, message
    return message


def good_png(tmp_path: Path, prompt: str = "a red circle") -> Path:
    meta = {"prompt": prompt, "negative_prompt": "", "steps": 12, "guidance_scale": 3.0, "seed": 7, "width": 64,
            "height": 64, "scheduler": "DDIM", "guidance_rescale": 0.0, "model": "hf-playground/tiny-t2i-64"}
    path = tmp_path / "good.png"
    path.write_bytes(png_bytes(Image.new("RGB", (64, 64), "white"), meta))
    return path


def test_a_truncated_or_foreign_png_is_refused_and_a_good_one_still_restores(app, tmp_path):
    _, client = app
    whole = good_png(tmp_path).read_bytes()
    for name, data in [("truncated.png", whole[:60]), ("half.png", whole[:len(whole) // 2]),
                       ("text.png", b"not an image at all"), ("empty.png", b"")]:
        (tmp_path / name).write_bytes(data)
        message = refusal(lambda n=name: client.predict(handle_file(str(tmp_path / n)),
                                                        api_name="/restore_image_settings"))
        assert "PNG" in message or "generation parameters" in message, (name, message)
    restored = client.predict(handle_file(str(good_png(tmp_path, "a blue square"))), api_name="/restore_image_settings")
    assert restored[0] == "a blue square"


def test_damaged_documents_are_refused_by_name_and_the_collection_still_takes_good_ones(app, tmp_path):
    _, client = app
    client.predict("docs", 50, 10, api_name="/index_create")
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    files = {"cut.pdf": pdf, "noise.pdf": bytes(range(256)) * 8, "empty.pdf": b"",
             "binary.txt": b"\x00\x01\x02" * 100, "latin1.md": "caf\xe9 cr\xe8me".encode("latin-1"),
             "blank.txt": b"   \n\n"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        message = refusal(lambda n=name: client.predict("docs", [handle_file(str(tmp_path / n))],
                                                        api_name="/index_add_documents"))
        assert name in message, message
    (tmp_path / "notes.md").write_text("the kettle boils water for tea in two minutes")
    status, _ = client.predict("docs", [handle_file(str(tmp_path / "notes.md"))], api_name="/index_add_documents")
    assert "notes.md" in status or "1 document" in status, status


def test_damaged_chat_imports_are_refused_and_a_good_one_still_imports(app, tmp_path):
    _, client = app
    cases = {"cut.json": b'{"messages": [{"role": "user", "content": "hi"', "binary.json": b"\xff\xfe\x00garbage",
             "wrong.json": json.dumps({"messages": [{"role": "robot", "content": 3}]}).encode(),
             "scalar.json": b"42", "empty.json": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        message = refusal(lambda n=name: client.predict(handle_file(str(tmp_path / n)), api_name="/import_chat"))
        assert name in message and "unchanged" in message, message
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi!"}]))
    shown, _ = client.predict(handle_file(str(good)), api_name="/import_chat")
    assert [m["role"] for m in shown] == ["user", "assistant"]


def test_damaged_dataset_uploads_are_refused_and_a_good_one_still_opens(app, tmp_path):
    from ui.datasets_tab import EMPTY_STATE, upload_dataset, user_errors

    services, _ = app
    upload = user_errors(functools.partial(upload_dataset, browser=services.datasets))
    table = pa.table({"n": list(range(20)), "s": [f"row {i}" for i in range(20)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    parquet = buffer.getvalue()
    cases = {"cut.parquet": parquet[: len(parquet) // 2], "noise.parquet": b"PAR1" + bytes(200) + b"PAR1",
             "cut.json": b'[{"n": 1}, {"n": 2', "cut.jsonl": b'{"n": 1}\n{"n": ', "scalar.json": b"42",
             "binary.csv": b"\xff\xfe\x00\x01" * 50, "ragged.csv": b"a,b\n1,2\n3,4,5,6\n", "empty.csv": b"",
             "cut.arrow": b"ARROW1\x00\x00" + bytes(40)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        message = refusal(lambda n=name: upload(str(tmp_path / n), 20, dict(EMPTY_STATE), None))
        assert name in message, message
    pq.write_table(table, str(tmp_path / "good.parquet"))
    state, status, *_ = upload(str(tmp_path / "good.parquet"), 20, dict(EMPTY_STATE), None)
    assert state["ref"] and "20" in status, status


def test_damaged_model_files_are_refused_and_a_good_model_still_loads(app, tiny_llama, models_root):
    _, client = app
    for name, damage in [("cut-weights", lambda d: d[: len(d) // 2]), ("noise-weights", lambda d: bytes(5000))]:
        folder = models_root / name
        shutil.copytree(tiny_llama, folder, dirs_exist_ok=True)
        weights = folder / "model.safetensors"
        weights.write_bytes(damage(weights.read_bytes()))
        message = refusal(lambda f=folder: client.predict("chat", str(f), api_name="/load_model"))
        assert "damaged or incomplete" in message, message
    assert "loaded" in client.predict("chat", str(tiny_llama), api_name="/load_model").lower()


def test_a_damaged_embedded_gguf_is_refused_with_how_to_reinstall_it(app, tmp_path, monkeypatch):
    from engines import embedded

    services, client = app
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(300))  # a header and nothing after it
    monkeypatch.setattr(embedded, "package_file", lambda model: gguf)
    for task in ("chat", "text-generation"):
        message = refusal(lambda t=task: client.predict(t, "HuggingFaceTB/SmolLM2-135M-Instruct",
                                                        api_name="/load_model"))
        assert "damaged or incomplete" in message and "reinstall" in message, message
    assert not any(services.config.models_dir.glob("*/.complete"))  # nothing half-converted was kept


def test_gr_error_is_what_the_handlers_raise(tmp_path):
    """The refusal helper above really catches gr.Error (what handlers called directly raise)."""
    message = refusal(lambda: (_ for _ in ()).throw(gr.Error("a clear message")))
    assert "a clear message" in message


def test_a_lone_surrogate_in_a_prompt_is_refused_by_the_real_tokenizer_path(app, tiny_llama):
    """JSON can carry "\\ud800"; the tokenizer cannot take it (a TypeError deep inside): a 400 naming the message."""
    import requests

    services, client = app
    url = client.src.rstrip("/") + "/v1/"
    # requests writes JSON with ASCII escapes, so the lone surrogate arrives as the six characters \ud800
    messages = [{"role": "user", "content": "hi \ud800"}]
    chat = requests.post(url + "chat/completions", json={"model": str(tiny_llama), "messages": messages,
                                                         "max_tokens": 4}, timeout=60)
    assert chat.status_code == 400 and "surrogate" in chat.json()["error"]["message"], chat.text
    complete = requests.post(url + "completions", json={"model": str(tiny_llama), "prompt": "once \ud800",
                                                        "max_tokens": 4}, timeout=60)
    assert complete.status_code == 400 and "prompt" in complete.json()["error"]["message"], complete.text
    fine = requests.post(url + "completions", json={"model": str(tiny_llama), "prompt": "once", "max_tokens": 4},
                         timeout=60)
    assert fine.status_code == 200 and fine.json()["choices"][0]["text"]
