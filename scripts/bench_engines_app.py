"""The app side of scripts/bench_engines.py: `python app.py` in a subprocess, driven as people would drive it."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
STORIES = ["Write a short story about a dragon who learns to read.", "Write a short story about a lost robot.",
           "Write a short story about a brave little mouse.", "Write a short story about a pirate who hates water."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_200(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s")


def one_stream(api, content: str, new_tokens: int) -> dict:
    """One streamed chat through /v1: time to first text, total time, tokens (from the usage record)."""
    start, first, tokens, text = time.perf_counter(), None, 0, ""
    stream = api.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], stream=True,
                                         temperature=0, max_tokens=new_tokens, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - start
            text += chunk.choices[0].delta.content
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    total = time.perf_counter() - start
    return {"ttft_s": first, "total_s": total, "tokens": tokens, "text": text}


def api_side(url: str, new_tokens: int, repeats: int) -> dict:
    import openai

    api = openai.OpenAI(base_url=url + "v1", api_key="none", max_retries=0, timeout=300)
    paris = one_stream(api, "What is the capital of France?", 24)["text"]
    alone = [one_stream(api, STORIES[0], new_tokens) for _ in range(repeats)]
    one_tps = statistics.median(r["tokens"] / r["total_s"] for r in alone)
    one_ttft = statistics.median(r["ttft_s"] for r in alone)
    rounds = []
    for _ in range(repeats):
        results: list[dict] = []
        start = time.perf_counter()
        threads = [threading.Thread(target=lambda s=s, out=results: out.append(one_stream(api, s, new_tokens)))
                   for s in STORIES]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        rounds.append({"aggregate_tok_s": sum(r["tokens"] for r in results) / wall,
                       "median_ttft_s": statistics.median(r["ttft_s"] for r in results)})
    agg = statistics.median(r["aggregate_tok_s"] for r in rounds)
    ttft4 = statistics.median(r["median_ttft_s"] for r in rounds)
    return {"paris": paris.strip(), "one_stream_tok_s": round(one_tps, 2), "one_stream_ttft_s": round(one_ttft, 3),
            "four_streams_aggregate_tok_s": round(agg, 2), "four_streams_median_ttft_s": round(ttft4, 3),
            "aggregate_over_one": round(agg / one_tps, 2), "target_aggregate_over_one": ">= 2.0",
            "ttft_four_over_one": round(ttft4 / one_ttft, 2), "target_ttft_four_over_one": "<= 2.5"}


def chat_side(url: str, new_tokens: int, repeats: int) -> dict:
    """One person in the Chat tab (gradio_client, streamed): decode tokens/s of the reply."""
    from gradio_client import Client
    from transformers import AutoTokenizer

    from config import AppConfig
    from engines import gguf_openvino
    from engines.embedded import EMBEDDED, package_file

    gguf = package_file(EMBEDDED[MODEL])
    tok = AutoTokenizer.from_pretrained(gguf_openvino.folder_for(gguf, AppConfig.from_args([]).models_dir))
    client = Client(url, verbose=False, ssl_verify=False)
    settings = dict(model=MODEL, temperature=0, repetition_penalty=1.0, max_new_tokens=new_tokens, api_name="/chat")
    client.predict(message="Hello", **settings)  # warm-up
    rates = []
    for _ in range(repeats):
        client.predict(api_name="/clear")
        start, first = time.perf_counter(), None
        job = client.submit(message=STORIES[0], **settings)
        for chunk in job:
            if first is None and chunk and chunk[-1]["role"] == "assistant" and _text(chunk[-1]):
                first = time.perf_counter() - start
        reply = _text(job.result()[-1])
        tokens = len(tok(reply, add_special_tokens=False).input_ids)
        rates.append((tokens - 1) / (time.perf_counter() - start - first))
    return {"chat_decode_tok_s": round(statistics.median(rates), 2), "runs_tok_s": [round(r, 2) for r in rates]}


def _load(client) -> float:
    start = time.perf_counter()
    client.predict("chat", MODEL, api_name="/load_model")
    return time.perf_counter() - start


def _text(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def app_side(args, raw_decode_tok_s: float) -> dict:
    """Start-up, loads (cold in this process, then warm), memory added, one chat, four /v1 streams."""
    import psutil
    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PLAYGROUND_THREADS=str(args.threads),
               PLAYGROUND_ENGINE="auto", PLAYGROUND_RATE_LIMIT="0")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--no-preload"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_http_200(url)
        startup = time.perf_counter() - start
        time.sleep(3)
        app = psutil.Process(proc.pid)
        before = app.memory_info().rss / 2**20
        client = Client(url, verbose=False)
        loads = [_load(client)]  # the first load also imports the engine's libraries
        chat = chat_side(url, args.new_tokens, args.repeats)
        app_added = app.memory_info().rss / 2**20 - before
        engine_mb = sum(c.memory_info().rss for c in app.children(recursive=True)) / 2**20  # the engine process
        added = app_added + engine_mb
        table = client.predict(api_name="/models_list")[0]
        # gradio_client gives a Dataframe as {"headers": [...], "data": [[...]]}
        headers, rows = (table["headers"], table["data"]) if isinstance(table, dict) else ([], table)
        api = api_side(url, args.new_tokens, args.repeats)
        warm = {}
        for pause in (0, 1, 1, 1):  # warm: libraries imported, the OpenVINO folder built, files in the page cache
            client.predict(MODEL, api_name="/unload_model")
            time.sleep(pause)  # 0: at once (the spare engine process the unload starts is still importing)
            warm.setdefault(pause, []).append(round(_load(client), 2))
        loads.append(statistics.median(warm[1]))
    finally:
        proc.terminate()
        proc.wait(10)
    return {"startup_to_http_200_s": round(startup, 2), "target_startup_s": "<= 10",
            "load_model_call_s_first_then_warm": [round(x, 2) for x in loads], "target_warm_load_s": "<= 2",
            "warm_load_s_at_once_after_unload": warm[0], "warm_load_s_1s_after_unload": warm[1],
            "memory_added_by_chat_model_mb": round(added), "target_memory_mb": "<= 300",
            "memory_split_mb": {"app_process_growth": round(app_added), "engine_process_rss": round(engine_mb)},
            "models_tab_row": dict(zip(headers, rows[0], strict=False)) if rows and headers else rows, **chat,
            "chat_over_raw_float32": round(chat["chat_decode_tok_s"] / raw_decode_tok_s, 2),
            "target_chat_over_raw": ">= 4.0", "api": api}
