"""Load test: N simulated users for T seconds against the running app (a subprocess on the embedded models).

Users mix the UI endpoints (gradio_client /chat and /generate, some pressing Stop) and the OpenAI API (streamed chat,
completions, embeddings, some disconnecting mid-stream). Each API user has its own key, so the per-user rate limit
applies per user. Prints one JSON object: requests by outcome (ok, stopped, refused by a limit, failed), the server's
peak memory, and whether every stream ended. A request counts as failed when it errors without being a limit's
refusal, or when its stream never ends.

    python scripts/load_test.py [--users 32] [--seconds 60] [--threads 2] [--max-rss-growth-mb 1536]

Exit status 1 when a request failed without a limit's refusal, or the server's peak memory grew past the bound.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from bench_text import MODEL, free_port, wait_http_200  # noqa: E402

LIMIT_WORDS = ("rate limit", "queue is full", "already waiting", "too many", "429", "503")
QUESTIONS = ["What is the capital of France?", "Name three fruits.", "Why do cats purr?", "Say hello in Spanish.",
             "What is 2 + 2?", "Give me a word that rhymes with blue.", "What colour is the sky?"]


class Tally:
    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.errors: Counter = Counter()  # unrefused failures, by message
        self.reasons: Counter = Counter()  # refusals by a limit, by the limit's words
        self.lock = threading.Lock()
        self.inflight: dict[int, tuple[str, float]] = {}  # user -> (what it waits for, since when)

    def add(self, kind: str, outcome: str, error: str = "") -> None:
        with self.lock:
            self.counts[f"{kind}:{outcome}"] += 1
            self.counts[outcome] += 1
            if error and outcome == "refused":
                self.reasons[refusal_reason(error)] += 1
            elif error:
                self.errors[error[:160]] += 1


def refusal_reason(error: str) -> str:
    """The limit that refused a request, in the words of its message."""
    return next((w for w in LIMIT_WORDS if w in error.lower()), "limit")


def outcome_of(exc: BaseException) -> str:
    text = f"{type(exc).__name__} {exc}".lower()
    return "refused" if any(w in text for w in LIMIT_WORDS) else "failed"


def ui_chat(url: str, rng: random.Random, tally: Tally) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    job = client.submit(message=rng.choice(QUESTIONS), model=MODEL, temperature=0.7,
                        max_new_tokens=rng.randint(8, 32), api_name="/chat")
    press_stop = rng.random() < 0.2
    for i, _ in enumerate(job):
        if press_stop and i == 3:
            client.predict(api_name="/stop")
    job.result(timeout=300)
    tally.add("ui_chat", "stopped" if press_stop else "ok")


def ui_generate(url: str, rng: random.Random, tally: Tally) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    client.predict(prompt="Once upon a time", stop_strings="", model=MODEL, show_probs=False, temperature=0.8,
                   top_p=0.9, top_k=50, repetition_penalty=1.1, max_new_tokens=rng.randint(8, 32), seed=-1,
                   api_name="/generate")
    tally.add("ui_generate", "ok")


def api_chat(api, rng: random.Random, tally: Tally) -> None:
    disconnect = rng.random() < 0.2
    stream = api.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": rng.choice(QUESTIONS)}],
                                         max_tokens=rng.randint(8, 32), temperature=0.7, stream=True)
    finished = False
    for i, chunk in enumerate(stream):
        if disconnect and i == 3:
            stream.close()
            break
        finished = finished or any(c.finish_reason for c in chunk.choices)
    if not disconnect and not finished:
        raise RuntimeError("the stream ended without a finish_reason")
    tally.add("api_chat", "stopped" if disconnect else "ok")


def api_complete(api, rng: random.Random, tally: Tally) -> None:
    api.completions.create(model=MODEL, prompt="The weather today is", max_tokens=rng.randint(8, 24))
    tally.add("api_completion", "ok")


def api_embed(api, rng: random.Random, tally: Tally) -> None:
    api.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=rng.sample(QUESTIONS, 3))
    tally.add("api_embeddings", "ok")


def user(n: int, url: str, key: str, until: float, tally: Tally) -> None:
    import openai

    rng = random.Random(n)
    api = openai.OpenAI(base_url=url + "v1", api_key=key, max_retries=0, timeout=300)
    actions = [ui_chat, ui_generate] if n % 2 == 0 else [api_chat, api_chat, api_complete, api_embed]
    while time.monotonic() < until:
        action = rng.choice(actions)
        kind = action.__name__
        tally.inflight[n] = (kind, time.monotonic())
        try:
            action(url, rng, tally) if kind.startswith("ui_") else action(api, rng, tally)
        except Exception as exc:
            outcome = outcome_of(exc)
            tally.add(kind, outcome, f"{type(exc).__name__}: {exc}")
            if outcome == "refused":
                time.sleep(2)  # a polite client backs off
        tally.inflight.pop(n, None)


def tree_rss(pid: int) -> int:
    """Resident memory of the server and its children (the OpenVINO engine runs in one per model)."""
    import psutil

    proc = psutil.Process(pid)
    return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))


def watch_memory(pid: int, stop: threading.Event, peak: list[int]) -> None:
    import psutil

    while not stop.is_set():
        try:
            rss = tree_rss(pid)
        except psutil.Error:
            break
        peak[0] = max(peak[0], rss)
        stop.wait(0.5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rate-limit", type=int, default=60)
    parser.add_argument("--max-rss-growth-mb", type=float, default=1536,
                        help="memory bound: the server's peak RSS may exceed its RSS before the load by this much")
    args = parser.parse_args()
    keys = [f"sk-load-{i}" for i in range(args.users)]
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PLAYGROUND_API_KEYS": ",".join(keys)}
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--offline",
                               "--threads", str(args.threads), "--rate-limit", str(args.rate_limit)],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    peak, stop_watch = [0], threading.Event()
    try:
        wait_http_200(url, timeout=120)
        from gradio_client import Client

        Client(url, verbose=False).predict("chat", MODEL, api_name="/load_model")  # not part of the load
        baseline = tree_rss(server.pid)
        watcher = threading.Thread(target=watch_memory, args=(server.pid, stop_watch, peak), daemon=True)
        watcher.start()
        tally = Tally()
        start = time.monotonic()
        until = start + args.seconds
        users = [threading.Thread(target=user, args=(i, url, keys[i], until, tally), daemon=True)
                 for i in range(args.users)]
        for t in users:
            t.start()
        for t in users:
            t.join(timeout=max(1.0, until + 300 - time.monotonic()))
        hung = sum(t.is_alive() for t in users)
        try:  # what the server's batches were doing when the users were done (or stuck)
            rows = Client(url, verbose=False).predict(api_name="/models_list")[0]["data"]
            activity = {row[0]: row[-1] for row in rows}
        except Exception as exc:
            activity = {"error": str(exc)}
        now = time.monotonic()
        stuck = {f"user {u}": f"{kind} for {now - since:.0f} s" for u, (kind, since) in tally.inflight.items()}
        wall = time.monotonic() - start
        time.sleep(5)  # let the server settle, then read what it keeps
        end_rss = tree_rss(server.pid)
    finally:
        stop_watch.set()
        server.terminate()
        server.wait(30)
    result = summarize(args, tally, hung, stuck, activity, wall, (baseline, peak[0], end_rss))
    print(json.dumps(result, indent=1))
    return 0 if result["targets_met"] else 1


def summarize(args, tally: Tally, hung: int, stuck: dict, activity: dict, wall: float,
              rss: tuple[int, int, int]) -> dict:
    """The run as one JSON object; the targets: no unrefused failure, and the server's peak memory bounded."""
    counts, (baseline, peak, end) = tally.counts, rss
    failed = counts["failed"] + hung
    bounded = peak - baseline <= args.max_rss_growth_mb * 2**20
    return {
        "users": args.users, "seconds": args.seconds, "wall_s": round(wall, 1), "threads": args.threads,
        "rate_limit_per_min": args.rate_limit, "model": MODEL,
        "requests": sum(counts[o] for o in ("ok", "stopped", "refused", "failed")),
        "ok": counts["ok"], "stopped": counts["stopped"], "refused_by_limit": counts["refused"],
        "refused_reasons": dict(tally.reasons), "unrefused_failures": failed, "failed": failed,
        "users_still_waiting_at_end": hung, "waiting_for": stuck, "server_batches_at_end": activity,
        "by_kind": {k: v for k, v in sorted(counts.items()) if ":" in k},
        "errors": dict(tally.errors.most_common(8)),
        "server_rss_mb_baseline": round(baseline / 2**20), "server_rss_mb_peak": round(peak / 2**20),
        "server_rss_mb_end": round(end / 2**20), "max_rss_growth_mb": args.max_rss_growth_mb,
        "memory_bounded": bounded, "targets_met": failed == 0 and bounded,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


if __name__ == "__main__":
    raise SystemExit(main())
