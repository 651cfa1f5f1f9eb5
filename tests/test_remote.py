"""Remote engines: the text tabs on an external OpenAI-compatible server, here this app started as its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port

from engines.cache import ModelCache
from engines.catalog import parse_catalog
from engines.device import choose_placement
from engines.params import GenerationParams
from engines.remote import RemoteTextEngine, RemoteUnavailable
from engines.resolve import HubProbe, ModelResolver
from engines.text import TextEngine

ROOT = Path(__file__).resolve().parents[1]
GREEDY = GenerationParams(temperature=0, max_new_tokens=16, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_root, sharp_llama):
    """`python app.py` serving the tiny Llama on its /v1 API, with a key."""
    folder = tmp_path_factory.mktemp("remote-server")
    catalog = folder / "catalog.json"
    catalog.write_text(json.dumps({"tasks": {"chat": {"default": str(sharp_llama)},
                                             "text-generation": {"default": str(sharp_llama)}}}))
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PLAYGROUND_API_KEYS": "sk-remote"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--offline", "--no-preload",
                             "--allow-dir", str(models_root), "--catalog", str(catalog), "--data-dir",
                             str(folder / "data"), "--threads", "1"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url + "/models", headers={"Authorization": "Bearer sk-remote"})
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the server did not answer within 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def engines(tmp_path, models_root, sharp_llama, server, monkeypatch):
    """A local engine on the tiny Llama, and one whose 'far-llama' lives on the server."""
    monkeypatch.setenv("FAR_KEY", "sk-remote")
    catalog = parse_catalog({"tasks": {"chat": {"default": "far-llama"}}, "remote": {
        "far-llama": {"base_url": server, "model": str(sharp_llama), "api_key_env": "FAR_KEY"},
        "nowhere": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "x"}}})
    resolver = ModelResolver((models_root,), tmp_path / "converted", HubProbe(offline=True))
    engine = TextEngine(ModelCache(), resolver, choose_placement("cpu", "float32"),
                        remote=RemoteTextEngine(catalog.remote))
    return engine, str(sharp_llama), catalog


def text_of(stream) -> tuple[str, list]:
    updates = list(stream)
    return "".join(u.delta for u in updates), updates


def test_a_remote_model_answers_like_the_same_model_here(engines):
    engine, local, catalog = engines
    assert "far-llama" in catalog.choices("chat") and "far-llama" in catalog.choices("text-generation")
    messages = [{"role": "user", "content": "hello there"}]
    here, _ = text_of(engine.chat(local, messages, GREEDY))
    far, updates = text_of(engine.chat("far-llama", messages, GREEDY, with_probs=True))
    assert far == here and here
    stats = updates[-1].stats
    assert stats.model == "far-llama" and stats.generated_tokens > 0 and stats.prompt_tokens > 3
    assert all(0 < p <= 1 for u in updates[:-1] for _, p in u.tokens)
    here, _ = text_of(engine.complete(local, "once upon a time", GREEDY))
    far, _ = text_of(engine.complete("far-llama", "once upon a time", GREEDY))
    assert far == here


def test_stopping_a_remote_stream_ends_it(engines):
    engine, _, _ = engines
    stop = threading.Event()
    long = GenerationParams(temperature=0, max_new_tokens=400, repetition_penalty=1.0)
    received = 0
    for update in engine.complete("far-llama", "once upon a time", long, stop=stop):
        if update.stats:
            assert update.stats.finish_reason == "stop"
            break
        received += 1
        if received == 3:
            stop.set()
    assert received == 3


def test_unreachable_or_refusing_servers_get_clear_messages(engines, server):
    engine, _, _ = engines
    with pytest.raises(RemoteUnavailable, match="cannot reach http://127.0.0.1"):
        list(engine.chat("nowhere", [{"role": "user", "content": "hi"}], GREEDY))
    bad = RemoteTextEngine(parse_catalog({"tasks": {}, "remote": {
        "far": {"base_url": server, "model": "no-such/model", "api_key_env": "FAR_KEY"}}}).remote)
    with pytest.raises(RemoteUnavailable, match="HTTP 404"):
        list(bad.chat("far", [{"role": "user", "content": "hi"}], GREEDY))


def test_keys_stay_out_of_the_catalog():
    with pytest.raises(ValueError, match="api_key_env"):
        parse_catalog({"tasks": {}, "remote": {"x": {"base_url": "http://h/v1", "api_key": "sk-secret"}}})
    with pytest.raises(ValueError, match="base_url"):
        parse_catalog({"tasks": {}, "remote": {"x": {"base_url": "h:8000"}}})
