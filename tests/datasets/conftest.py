"""Fixtures for the dataset browser tests: offline, one thread, temp folders, a shared sample cache."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import socket
from pathlib import Path

import pytest

from databrowser import DatasetBrowser


@pytest.fixture(scope="session")
def samples_cache(tmp_path_factory) -> Path:
    """Samples are built once per test run and copied into each browser's cache."""
    return tmp_path_factory.mktemp("samples-cache")


@pytest.fixture
def allowed(tmp_path) -> Path:
    """The one folder the browser may read in a test."""
    folder = tmp_path / "allowed"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(tmp_path, allowed, samples_cache) -> DatasetBrowser:
    """A browser whose cache and exports are under tmp_path, reading only `allowed`, with a short query limit."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "samples").symlink_to(samples_cache, target_is_directory=True)
    return DatasetBrowser(cache, [allowed], offline=True, max_upload_mb=1, per_session=2, max_open=4,
                          timeout_s=5.0, export_dir=tmp_path / "exports")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app(tmp_path, allowed, browser):
    """A gr.Blocks holding just the Datasets tab (and a Chat textbox to send to), launched on a free port."""
    import gradio as gr

    from config import AppConfig
    from ui import datasets_tab as tab

    config = AppConfig(data_dir=tmp_path / "data", allowed_dirs=(allowed,), offline=True, max_upload_mb=1)
    with gr.Blocks() as demo:
        chat = gr.Textbox(label="Chat prompt", render=False, elem_id="chat-prompt")
        with gr.Tab("Datasets"):
            tab.build(tab.DatasetsDeps(browser, {"Chat": chat}, offline=config.offline,
                                       max_upload_mb=config.max_upload_mb))
        with gr.Tab("Chat"):
            chat.render()
    port = _free_port()
    demo.queue().launch(server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: needs Chromium at /usr/bin/chromium (playwright, headless)")

