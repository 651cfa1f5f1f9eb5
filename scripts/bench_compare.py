"""Compare tab benchmark: columns sharing a batch, columns on two models, and an evaluation run against /generate.

Prints one JSON object with the issue's targets and whether each was met. Runs the real app in this process on the
embedded SmolLM2; "two different models" are two instances of it loaded under two names (a second cache entry, a
second batch, its own worker: the engine's work for two models, with the same speed on both sides).

    PYTHONPATH=. flock /tmp/bench.lock .venv/bin/python scripts/bench_compare.py [--rows 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SIDE_PROMPTS = ["Write a short story about a dragon who learns to read.",
                "Explain how a bicycle works to a ten year old.",
                "Describe a walk through a busy market in the morning."]
TOPICS = ["the moon", "rivers", "bread", "trains", "owls", "glass", "volcanoes", "tea", "maps", "bees",
          "clocks", "salt", "bridges", "snow", "paper", "copper", "forests", "kites", "wool", "lighthouses"]
FORMS = ["Tell me about {}.", "Write two sentences about {}.", "Why do people like {}?", "What is special about {}?",
         "Give a fun fact about {}.", "Describe {} to a child.", "How are {} made or formed?",
         "What would a poem about {} say?", "List three things about {}.", "Explain the history of {}."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_app(data_dir: Path):
    """The real app around the embedded model, its converted copy shared with the default data dir."""
    import app
    from config import AppConfig, default_data_dir
    from services import build_services

    (data_dir / "models").symlink_to(default_data_dir() / "models", target_is_directory=True)
    config = AppConfig(data_dir=data_dir, offline=True, preload=False, port=free_port(), rate_limit_per_min=0,
                       max_queue=512, allowed_dirs=(default_data_dir() / "models",))
    services = build_services(config)
    demo = app.build_app(services)
    app.launch(services, demo, block=False)
    return services, demo, f"http://127.0.0.1:{config.port}/"


def timed_columns(engine, requests) -> dict:
    """Wall time until every column ends, and each column's time to its first text and token count."""
    from compare.columns import stream_columns

    start, first = time.perf_counter(), [None] * len(requests)
    states = []
    for states in stream_columns(engine, requests, threading.Event()):
        for i, s in enumerate(states):
            if s.text and first[i] is None:
                first[i] = time.perf_counter() - start
    return {"wall_s": time.perf_counter() - start, "first_s": first,
            "tokens": [s.stats.get("generated_tokens") for s in states]}


def side_by_side(engine, model_b: str, new_tokens: int, rounds: int) -> dict:
    from compare.columns import ColumnRequest
    from engines.params import GenerationParams

    greedy = GenerationParams(temperature=0.0, max_new_tokens=new_tokens, seed=1)
    warm = GenerationParams(temperature=0.7, max_new_tokens=new_tokens, seed=2)
    runs: dict[str, list] = {k: [] for k in ("a_alone", "b_alone", "same_model", "two_models")}
    warm_up = ({"role": "user", "content": "Say hello."},)
    for ref in (MODEL, model_b):  # the first generations after a load are slower (pages fault in): not counted
        timed_columns(engine, [ColumnRequest(ref, greedy, messages=warm_up)] * 2)
    for r in range(rounds):
        for prompt in SIDE_PROMPTS:
            msgs = ({"role": "user", "content": f"{prompt} (round {r})"},)
            a, a2 = ColumnRequest(MODEL, greedy, messages=msgs), ColumnRequest(MODEL, warm, messages=msgs)
            b = ColumnRequest(model_b, greedy, messages=msgs)
            runs["a_alone"].append(timed_columns(engine, [a]))
            runs["same_model"].append(timed_columns(engine, [a, a2]))
            runs["b_alone"].append(timed_columns(engine, [b]))
            runs["two_models"].append(timed_columns(engine, [a, b]))
    med = {k: statistics.median(x["wall_s"] for x in v) for k, v in runs.items()}
    ttft_alone = statistics.median(x["first_s"][0] for x in runs["a_alone"])
    both_first = statistics.median(max(x["first_s"]) for x in runs["two_models"])
    return {
        "median_wall_s": {k: round(v, 3) for k, v in med.items()},
        "tokens": {k: [x["tokens"] for x in v][:3] for k, v in runs.items()},
        "same_model_ratio": round(med["same_model"] / med["a_alone"], 3),
        "two_models_wall_over_sum": round(med["two_models"] / (med["a_alone"] + med["b_alone"]), 3),
        "first_tokens_both_s": round(both_first, 3), "ttft_one_alone_s": round(ttft_alone, 3),
        "first_tokens_ratio": round(both_first / ttft_alone, 3),
    }


def evaluation(url: str, model_b: str, rows: int, new_tokens: int, sequential: int) -> dict:
    """The eval through /eval_start against the same prompts one by one through /generate (a sample of them)."""
    from gradio_client import Client

    prompts = [FORMS[i % len(FORMS)].format(TOPICS[(i // len(FORMS)) % len(TOPICS)]) + f" ({i})"
               for i in range(rows)]
    data = "\n".join(json.dumps({"prompt": p}) for p in prompts)
    c = Client(url, verbose=False)
    start = time.perf_counter()
    run = c.predict([MODEL, model_b], data=data, mode="completion", scorers=[], limit=rows, temperature=0.0,
                    max_new_tokens=new_tokens, api_name="/eval_start")["run"]
    while (status := c.predict(run, api_name="/eval_status"))["status"] == "running":
        time.sleep(0.5)
    eval_wall = time.perf_counter() - start
    found = c.predict(run, api_name="/eval_results")["rows"]
    eval_tokens = sum(r["tokens"] or 0 for r in found)
    for model in (MODEL, model_b):  # warm the /generate path too, not counted
        c.predict("Hello", "", model, False, 0.0, 0.9, 50, 1.1, 4, 0, api_name="/generate")
    seq_start, seq_tokens = time.perf_counter(), 0
    pairs = [(p, m) for p in prompts[:sequential // 2] for m in (MODEL, model_b)]
    for prompt, model in pairs:
        c.predict(prompt, "", model, False, 0.0, 0.9, 50, 1.1, new_tokens, 0, api_name="/generate")
        details = c.predict(api_name="/generation_details")[0]
        seq_tokens += int(re.search(r"\*\*(\d+)\*\* generated", details).group(1))
    seq_wall = time.perf_counter() - seq_start
    return {"rows": rows, "models": 2, "new_tokens": new_tokens, "status": status["status"],
            "failed": status["failed"], "eval_wall_s": round(eval_wall, 2), "eval_tokens": eval_tokens,
            "eval_rows_per_s": round(2 * rows / eval_wall, 3), "sequential_requests": len(pairs),
            "sequential_wall_s": round(seq_wall, 2), "sequential_tokens": seq_tokens,
            "sequential_rows_per_s": round(len(pairs) / seq_wall, 3),
            "throughput_ratio_rows": round((2 * rows / eval_wall) / (len(pairs) / seq_wall), 3),
            "throughput_ratio_tokens": round((eval_tokens / eval_wall) / (seq_tokens / seq_wall), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="prompts in the evaluation (each to 2 models; 0: skip)")
    parser.add_argument("--eval-tokens", type=int, default=32)
    parser.add_argument("--sequential", type=int, default=40, help="requests one by one through /generate")
    parser.add_argument("--side-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three side-by-side prompts")
    args = parser.parse_args()
    from config import default_data_dir

    data_dir = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    services, demo, url = build_app(data_dir)
    model_b = str(default_data_dir() / "models" / "SmolLM2-135M-Instruct-fp32")  # same weights, second instance
    for ref in (MODEL, model_b):
        services.text.load(ref)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    side = side_by_side(services.text, model_b, args.side_tokens, args.rounds)
    ev = evaluation(url, model_b, args.rows, args.eval_tokens, args.sequential) if args.rows else {}
    result = {
        "date": started, "cpus": os.cpu_count(), "torch_threads": __import__("torch").get_num_threads(),
        "max_batch": services.config.max_batch, "model": MODEL, "load_average": os.getloadavg(),
        "side_by_side": side, "evaluation": ev,
        "targets": {
            "same_model_le_1.5x": side["same_model_ratio"] <= 1.5,
            "two_models_wall_le_1.1x_sum": side["two_models_wall_over_sum"] <= 1.1,
            "two_models_first_tokens_le_2x_ttft": side["first_tokens_ratio"] <= 2.0,
            "eval_throughput_ge_1.8x_sequential": ev["throughput_ratio_rows"] >= 1.8 if ev else None,
        },
    }
    print(json.dumps(result, indent=1))
    demo.close()


if __name__ == "__main__":
    main()
