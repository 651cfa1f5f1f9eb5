"""Text benchmark: the app end to end (gradio_client, streamed) against raw `model.generate`, side by side.

Prints one JSON object. Same embedded model, same greedy settings and prompts for both sides; raw runs first in
this process, then the app runs in a subprocess with the same thread count while this process only waits.

    python scripts/bench_text.py [--threads N] [--new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SYSTEM = "You are a helpful assistant. Answer briefly and accurately."
PROMPTS = [
    "Write a short story about a dragon who learns to read.",
    "Explain how a bicycle works to a ten year old.",
    "List some good habits for staying healthy and explain each one.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_200(url: str, timeout: float = 60) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s")


def start_app(port: int, env: dict, preload: bool = True) -> subprocess.Popen:
    args = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--offline",
            *([] if preload else ["--no-preload"])]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)


def measure_startup(env: dict) -> float:
    port = free_port()
    start = time.perf_counter()
    proc = start_app(port, env)
    try:
        wait_http_200(f"http://127.0.0.1:{port}/")
        return time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(10)


def raw_side(folder: str, args) -> tuple[dict, object]:
    import torch
    import transformers.models.llama.modeling_llama  # noqa: F401  (module import is not model loading)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    load_times = []
    for _ in range(2):  # the converted folder, as the app loads it: tokenizer + weights on the CPU
        start = time.perf_counter()
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, device_map="cpu").eval()
        load_times.append(time.perf_counter() - start)
    load_s = min(load_times)
    runs = []
    for prompt in PROMPTS:
        text = tok.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                                       add_generation_prompt=True, tokenize=False)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        gen = dict(do_sample=False, repetition_penalty=1.0, pad_token_id=tok.eos_token_id)
        with torch.inference_mode():
            model.generate(**ids, max_new_tokens=4, **gen)  # warm-up
            for _ in range(args.repeats):
                t = time.perf_counter()
                model.generate(**ids, max_new_tokens=1, **gen)
                prefill = time.perf_counter() - t
                t = time.perf_counter()
                out = model.generate(**ids, max_new_tokens=args.new_tokens, **gen)
                total = time.perf_counter() - t
                reply = tok.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True)
                runs.append({"prompt": prompt[:30], "prefill_s": prefill, "total_s": total,
                             "tokens": count_tokens(tok, reply), "reply": reply})
    del model
    return {"load_s": load_s, "runs": runs}, tok


def count_tokens(tok, text: str) -> int:
    """Both sides count the same way: the tokens of the reply text."""
    return len(tok(text, add_special_tokens=False).input_ids)


def app_side(tok, env: dict, args) -> dict:
    from gradio_client import Client

    port = free_port()
    proc = start_app(port, env, preload=False)
    try:
        wait_http_200(f"http://127.0.0.1:{port}/")
        url = f"http://127.0.0.1:{port}/"
        t = time.perf_counter()
        Client(url, verbose=False).predict("chat", MODEL, api_name="/load_model")
        load_s = time.perf_counter() - t
        runs = []
        settings = dict(system_prompt=SYSTEM, model=MODEL, temperature=0, repetition_penalty=1.0,
                        max_new_tokens=args.new_tokens, api_name="/chat")
        # One visitor, as in a browser tab: gradio sets a session up on its first request (~20 ms for this app's
        # 287 blocks), which a person pays once when the page loads, not per message. ssl_verify=False: the URL is
        # plain http on localhost, so there is no TLS to verify, and verifying makes httpx load the CA bundle on
        # every request (~25 ms measured) - a cost of this client library, not of the app.
        # --fresh-client measures the other way: a new Client (new session) per message, CA bundle loaded.
        client = Client(url, verbose=False, ssl_verify=args.fresh_client)
        client.predict(message="Hello", **settings)  # warm-up, like the raw side
        for prompt in PROMPTS:
            for _ in range(args.repeats):
                if args.fresh_client:
                    client = Client(url, verbose=False)
                else:
                    client.predict(api_name="/clear")  # a fresh conversation each time ("New chat")
                t = time.perf_counter()
                job = client.submit(message=prompt, **settings)
                first = None
                for chunk in job:
                    if first is None and chunk and chunk[-1]["role"] == "assistant" and text_of(chunk[-1]):
                        first = time.perf_counter() - t
                history = job.result()
                total = time.perf_counter() - t
                reply = text_of(history[-1])
                runs.append({"prompt": prompt[:30], "ttft_s": first, "total_s": total,
                             "tokens": count_tokens(tok, reply), "reply": reply})
        return {"load_model_call_s": load_s, "runs": runs}
    finally:
        proc.terminate()
        proc.wait(10)


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def median(values) -> float:
    return round(statistics.median(values), 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None, help="torch threads on both sides (default: torch's)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-split-linear", action="store_true", help="run the app with torch's own linear layers")
    parser.add_argument("--fresh-client", action="store_true",
                        help="a new gradio_client.Client (a new session, CA bundle loaded) for every message")
    args = parser.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    if args.no_split_linear:
        env["PLAYGROUND_NO_SPLIT_LINEAR"] = "1"
    if args.threads:
        env["PLAYGROUND_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    from config import AppConfig
    from engines.embedded import ensure_converted

    folder = str(ensure_converted(MODEL, AppConfig.from_args([]).models_dir))
    startup = [measure_startup(env) for _ in range(2)]
    raw, tok = raw_side(folder, args)
    app = app_side(tok, env, args)
    raw_tps = sum(r["tokens"] for r in raw["runs"]) / sum(r["total_s"] for r in raw["runs"])
    app_tps = sum(r["tokens"] for r in app["runs"]) / sum(r["total_s"] for r in app["runs"])
    raw_ttft, app_ttft = median(r["prefill_s"] for r in raw["runs"]), median(r["ttft_s"] for r in app["runs"])
    same = sum(a["reply"] == r["reply"] for a, r in zip(app["runs"], raw["runs"], strict=False))
    result = {
        "benchmark": "text", "model": MODEL, "machine": f"{platform.machine()} {os.cpu_count()} cpu",
        "threads": args.threads or "torch default",
        "app_split_linear": not args.no_split_linear,
        "client": "fresh per message" if args.fresh_client else "one visitor",
        "new_tokens": args.new_tokens, "repeats": args.repeats,
        "raw_tokens_per_s": round(raw_tps, 2), "app_tokens_per_s": round(app_tps, 2),
        "app_over_raw_tokens_per_s": round(app_tps / raw_tps, 3), "target_app_over_raw": ">= 0.95",
        "raw_prefill_s_median": raw_ttft, "app_ttft_s_median": app_ttft,
        "ttft_overhead_ms": round((app_ttft - raw_ttft) * 1000, 1), "target_ttft_overhead_ms": "<= 150",
        "startup_to_http_200_s": [round(s, 2) for s in startup], "target_startup_s": "<= 10",
        "load_converted_default_s": round(raw["load_s"], 2), "target_load_s": "<= 3",
        "app_load_model_call_s_incl_warmup": round(app["load_model_call_s"], 2),
        "identical_replies": f"{same}/{len(app['runs'])}",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
