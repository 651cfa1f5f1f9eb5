"""Batching benchmark: 1 client and N concurrent streaming clients, one `generate` per request vs the shared batch.

Prints one JSON object. Same embedded model (SmolLM2-135M-Instruct), greedy, fixed prompts. One client's figures are
measured before and after the concurrent rounds and pooled (the machine's speed drifts). Concurrent clients each
send requests back to back, client i starting i/N of a single request's time late (users do not arrive in lockstep).
Two aggregate figures: `all_streaming` counts the tokens that arrive while all N clients are streaming (from the last
client's first request to the first client's last answer: N concurrent clients, new prompts joining as answers end),
`aggregate` all tokens over the whole round, including the arrivals and departures when fewer than N run. A burst
round, where all N arrive at the same instant, is reported too: there the last first token waits for all N prefills,
which on a CPU cost N times one. Each client is its own owner for the prefix cache (its requests reuse the chat
template's system prompt, never another client's; every question is numbered, so that no prompt is sent twice);
through the app each client is one visitor (see `app_runner`).

    python scripts/bench_batch.py [--threads 1] [--clients 4] [--new-tokens 64] [--requests 3] [--repeat 8]
    python scripts/bench_batch.py --via app   # the same through a running app's /chat endpoint (gradio_client)
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPTS = [
    "Write a short story about a dragon who learns to read.",
    "Explain how a bicycle works to a ten year old.",
    "List some good habits for staying healthy and explain each one.",
    "Describe the water cycle in a few sentences.",
    "Why is the sky blue? Explain simply.",
    "Give me three ideas for a rainy afternoon.",
    "What makes a good friend? Answer in a paragraph.",
    "Summarize the plot of Romeo and Juliet.",
]


_numbers = itertools.count(1)  # every request's question is new: a prompt sent again would be prefilled from cache


def one_request(run, prompt: str, new_tokens: int, owner: str = "client0") -> dict:
    # "Question n:" first, so that a request shares only the system prompt with the owner's earlier ones, like a new
    # chat; the same prompt sent again would be a whole-prompt hit in the prefix cache, rarer for real people
    prompt = f"Question {next(_numbers)}: {prompt}"
    counts = run(prompt, new_tokens, owner)  # the app runner connects its client here, before the clock starts
    start = time.perf_counter()
    first, tokens, arrivals = None, 0, []
    for n in counts:
        now = time.perf_counter()
        if first is None and n:
            first = now - start
        arrivals.append((now, n - tokens))
        tokens = n
    end = time.perf_counter()
    return {"tokens": tokens, "ttft_s": first or 0.0, "wall_s": end - start, "start": start, "end": end,
            "arrivals": arrivals}


def clients_round(run, clients: int, requests_each: int, new_tokens: int, stagger_s: float, offset: int) -> dict:
    """`clients` threads, client i starting i * stagger_s late, each sending requests back to back."""
    results: list[list[dict]] = [[] for _ in range(clients)]

    def client(i: int) -> None:
        time.sleep(i * stagger_s)
        for k in range(requests_each):
            results[i].append(one_request(run, PROMPTS[(offset + i + k * clients) % len(PROMPTS)], new_tokens,
                                          owner=f"client{i}"))

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done = [r for rs in results for r in rs]
    # while all clients are streaming: from the last client's first request to the first client's last answer
    full_from, full_to = max(rs[0]["start"] for rs in results), min(rs[-1]["end"] for rs in results)
    in_window = sum(n for r in done for t, n in r["arrivals"] if full_from <= t <= full_to)
    return {"aggregate_tok_s": sum(r["tokens"] for r in done) / wall, "ttft_s": [r["ttft_s"] for r in done],
            "request_s": [r["wall_s"] for r in done],
            "all_streaming_tok_s": in_window / (full_to - full_from) if full_to > full_from else 0.0,
            "all_streaming_s": max(0.0, full_to - full_from)}


def engine_runner(engine, batcher):
    """Requests through the engine; `batcher` None runs one generate() per request."""
    from engines.params import GenerationParams

    tm = engine.load(MODEL)

    def run(prompt: str, new_tokens: int, owner: str):
        tm.batcher = batcher
        params = GenerationParams(temperature=0, max_new_tokens=new_tokens, repetition_penalty=1.1)
        n = 0
        for update in engine.chat(MODEL, [{"role": "user", "content": prompt}], params, owner=owner):
            if update.stats is None:
                n += len(update.tokens)
                yield n
    return run


def app_runner(url: str, tm, batcher):
    """Requests through the running app's /chat; `batcher` None makes the app run one generate() per request.

    Each simulated person is one visitor, as in bench_text.py: one `gradio_client.Client` (one gradio session, which
    a browser also sets up once per page load; the app's prefix-cache owner), "New chat" (`/clear`) before each
    request, untimed, and `ssl_verify=False` on this plain-http URL (with it, httpx reads the CA bundle on every
    call, a cost of the client process, not of the app).
    """
    from gradio_client import Client

    visitors: dict[str, Client] = {}
    lock = threading.Lock()

    def run(prompt: str, new_tokens: int, owner: str):
        tm.batcher = batcher
        with lock:
            if owner not in visitors:
                visitors[owner] = Client(url, verbose=False, ssl_verify=False)
            client = visitors[owner]
        client.predict(api_name="/clear")  # a fresh conversation each time

        def counts():
            job = client.submit(message=prompt, model=MODEL, temperature=0, repetition_penalty=1.1,
                                max_new_tokens=new_tokens, api_name="/chat")
            seen = 0
            for history in job:
                content = history[-1]["content"] if history and history[-1]["role"] == "assistant" else ""
                text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
                if len(text) > seen:
                    seen = len(text)
                    yield seen  # characters: the UI streams text; the ratios compare like with like
        return counts()
    return run


def singles(runs: dict, args, warm_up: bool) -> dict[str, list[dict]]:
    """One client at a time, the modes' requests interleaved so that both see the same machine."""
    if warm_up:
        for run in runs.values():
            clients_round(run, 1, 1, 8, 0, 0)
    done: dict[str, list[dict]] = {name: [] for name in runs}
    for k in range(args.requests):
        for name, run in runs.items():
            done[name].append(one_request(run, PROMPTS[k % len(PROMPTS)], args.new_tokens))
    return done


def summary(requests: list[dict]) -> dict:
    return {"tok_s": sum(r["tokens"] for r in requests) / sum(r["wall_s"] for r in requests),
            "ttft_s": statistics.median(r["ttft_s"] for r in requests),
            "request_s": statistics.median(r["wall_s"] for r in requests)}


def rounds(run, request_s: float, args) -> dict:
    """N clients arriving spread out (steady state), and N arriving at the same instant."""
    stagger = request_s / args.clients
    steady = clients_round(run, args.clients, args.requests, args.new_tokens, stagger, 1)
    return {"stagger_s": stagger, "steady": steady, "burst": clients_round(run, args.clients, 1, args.new_tokens, 0, 2)}


def batched_round(run, args) -> tuple[float, float]:
    """One more round through the batch only: (all-streaming ÷ one client, worst concurrent TTFT ÷ one client's)."""
    before = singles({"batched": run}, args, warm_up=False)["batched"]
    measured = rounds(run, summary(before)["request_s"], args)
    after = singles({"batched": run}, args, warm_up=False)["batched"]
    single = summary(before + after)
    return (round(measured["steady"]["all_streaming_tok_s"] / single["tok_s"], 2),
            round(max(measured["steady"]["ttft_s"]) / single["ttft_s"], 2))


def report(single: dict, measured: dict) -> dict:
    steady, burst = measured["steady"], measured["burst"]
    return {
        "single_tok_s": round(single["tok_s"], 2), "single_ttft_s": round(single["ttft_s"], 3),
        "concurrent_aggregate_tok_s": round(steady["aggregate_tok_s"], 2),
        "concurrent_all_streaming_tok_s": round(steady["all_streaming_tok_s"], 2),
        "concurrent_all_streaming_s": round(steady["all_streaming_s"], 2),
        "concurrent_ttft_s_median": round(statistics.median(steady["ttft_s"]), 3),
        "concurrent_ttft_s_max": round(max(steady["ttft_s"]), 3),
        "stagger_s": round(measured["stagger_s"], 2),
        "burst_aggregate_tok_s": round(burst["aggregate_tok_s"], 2),
        "burst_ttft_s_max": round(max(burst["ttft_s"]), 3),
    }


def forward_step_ms(model, batch_sizes=(1, 2, 3, 4, 8), context: int = 60, steps: int = 10) -> dict[str, float]:
    """The bare model's decoding step by batch size: what batching can gain on this machine at best."""
    import torch
    from transformers import DynamicCache

    out = {}
    with torch.inference_mode():
        for b in batch_sizes:
            cache = DynamicCache()
            model(input_ids=torch.randint(0, 1000, (b, context)), cache=cache, use_cache=True, logits_to_keep=1)
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                model(input_ids=torch.randint(0, 1000, (b, 1)), cache=cache, use_cache=True, logits_to_keep=1)
                times.append(time.perf_counter() - start)
            out[str(b)] = round(1000 * statistics.median(times), 1)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=3, help="requests per client, back to back")
    parser.add_argument("--via", choices=("engine", "app"), default="engine")
    parser.add_argument("--prefix-cache-mb", type=int, default=256, help="as the app's flag; 0 turns it off")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of one client then N clients through the batch; with more than one, the targets "
                             "are checked on the medians of the rounds' ratios (this machine's speed swings)")
    return parser.parse_args()


def app_services(args):
    """(config, services) as the app builds them, torch's thread count set before anything builds a pool."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    import app
    from config import AppConfig

    # the torch batcher is what this measures (its steps, its prefix cache); the OpenVINO engine has bench_engines.py
    config = AppConfig(offline=True, preload=False, torch_threads=args.threads, max_batch=8, engine="torch",
                       prefix_cache_mb=args.prefix_cache_mb,
                       data_dir=Path.home() / ".cache" / "hf-playground", port=7999)
    return config, app.build_services(config)


def load_and_time(engine) -> tuple:
    """(the loaded model, its bare decoding step by batch size).

    Loading and the bare-step timing run in a thread of their own, as loads do in the app (a gradio worker, the
    preload thread): the process's first thread never builds an OpenMP pool of its own (see engines/omp.py).
    """
    box: dict = {}

    def load() -> None:
        box["tm"] = engine.load(MODEL)
        box["steps"] = forward_step_ms(box["tm"].model)

    worker = threading.Thread(target=load)
    worker.start()
    worker.join()
    return box["tm"], box["steps"]


def runners(args, config, services, tm) -> tuple[dict, object]:
    """({"generate": run, "batched": run}, the launched app or None)."""
    batcher = tm.batcher
    if args.via == "engine":
        return {"generate": engine_runner(services.text, None), "batched": engine_runner(services.text, batcher)}, None
    from app import build_app, launch

    demo = build_app(services)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON result
        launch(services, demo, block=False)  # as `python app.py` does
    url = f"http://127.0.0.1:{config.port}/"
    return {"generate": app_runner(url, tm, None), "batched": app_runner(url, tm, batcher)}, demo


def compare_modes(runs: dict, args) -> dict:
    """Both modes' reports and the batch's ratios to one client."""
    # one client before and after the concurrent rounds, so that a machine getting faster or slower meanwhile
    # (shared hosts do) moves both sides of the ratios alike
    before = singles(runs, args, warm_up=True)
    measured = {name: rounds(run, summary(before[name])["request_s"], args) for name, run in runs.items()}
    after = singles(runs, args, warm_up=False)
    single = {name: summary(before[name] + after[name]) for name in runs}
    one_generate_each = report(single["generate"], measured["generate"])
    batched = report(single["batched"], measured["batched"])
    return {
        "generate_per_request": one_generate_each,
        "batched": batched,
        "batched_concurrent_over_single": round(batched["concurrent_aggregate_tok_s"] / batched["single_tok_s"], 2),
        "batched_all_streaming_over_single": round(
            batched["concurrent_all_streaming_tok_s"] / batched["single_tok_s"], 2),
        "batched_ttft_concurrent_over_single": round(batched["concurrent_ttft_s_max"] / batched["single_ttft_s"], 2),
        "batched_single_over_generate_single": round(
            batched["single_tok_s"] / one_generate_each["single_tok_s"], 3),
    }


def repeated_rounds(run, args, first: tuple[float, float]) -> tuple[dict, float, float]:
    """(the `rounds` entry, the median throughput ratio, the median TTFT ratio); `first` is the first round's ratios."""
    rounds_seen = [first, *(batched_round(run, args) for _ in range(args.repeat - 1))]
    throughput = statistics.median(t for t, _ in rounds_seen)
    ttft = statistics.median(f for _, f in rounds_seen)
    return ({"all_streaming_over_single": [t for t, _ in rounds_seen],
             "ttft_concurrent_over_single": [f for _, f in rounds_seen],
             "medians": [round(throughput, 2), round(ttft, 2)]}, throughput, ttft)


def targets(throughput: float, ttft: float, single_no_slower: float) -> dict[str, bool]:
    return {"all_streaming_over_single>=2.5": throughput >= 2.5,
            "ttft_concurrent_over_single<=2": ttft <= 2,
            "single_no_slower>=0.97": single_no_slower >= 0.97}


def main() -> None:
    args = parse_args()
    config, services = app_services(args)
    result: dict = {"model": MODEL, "threads": args.threads, "clients": args.clients, "new_tokens": args.new_tokens,
                    "requests_per_client": args.requests, "via": args.via,
                    "prefix_cache_mb": args.prefix_cache_mb,
                    "machine": f"{platform.machine()} {os.cpu_count()} cpus"}
    tm, steps = load_and_time(services.text)
    result["forward_step_ms_by_batch"] = steps
    result["forward_throughput_batch4_over_batch1"] = round(4 * steps["1"] / steps["4"], 2)
    runs, demo = runners(args, config, services, tm)
    result |= compare_modes(runs, args)
    throughput, ttft = result["batched_all_streaming_over_single"], result["batched_ttft_concurrent_over_single"]
    if args.repeat > 1:
        result["rounds"], throughput, ttft = repeated_rounds(runs["batched"], args, (throughput, ttft))
    if demo is not None:
        with contextlib.redirect_stdout(sys.stderr):
            demo.close()
    # how much of the bare model's own batch-4 gain four streaming clients get (prompts joining between answers
    # cost the rest): the figure that does not depend on how much batching helps on this machine
    result["share_of_bare_batch4_gain"] = round(throughput / result["forward_throughput_batch4_over_batch1"], 2)
    result["targets"] = targets(throughput, ttft, result["batched_single_over_generate_single"])
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
