"""Demonstration: a LoRA run through the app's own job queue and runner teaches the embedded SmolLM2-135M to answer
in a fixed JSON format; held-out exact match before and after, answered through the app's TextEngine and cache.

    flock /tmp/bench.lock .venv/bin/python -m scripts.demo_finetune [--steps 120] [--train 600] [--test 50]

Prints one JSON object (before/after exact match, training time, a few answers side by side).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from config import AppConfig
from databrowser.browser import DatasetBrowser
from engines.cache import ModelCache
from engines.device import choose_placement
from engines.params import GenerationParams
from engines.resolve import HubProbe, ModelResolver
from engines.text import TextEngine
from finetune import demo_task
from finetune.data import DataSpec
from finetune.jobs import ACTIVE
from finetune.layout import Layout
from finetune.manager import JobManager
from finetune.service import FinetuneService, rows_from_browser
from finetune.settings import TrainSettings

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
GREEDY = GenerationParams(temperature=0, max_new_tokens=32, repetition_penalty=1.0)


def answers(engine: TextEngine, ref: str, rows: list[dict]) -> list[str]:
    out = []
    for row in rows:
        messages = [{"role": "user", "content": row["question"]}]
        out.append("".join(u.delta for u in engine.chat(ref, messages, GREEDY)).strip())
    return out


def score(replies: list[str], rows: list[dict]) -> float:
    return sum(demo_task.exact(r, row["answer"]) for r, row in zip(replies, rows, strict=True)) / len(rows)


def train(args, data_dir: Path, source: Path) -> tuple[dict, str]:
    config = AppConfig(offline=True, data_dir=data_dir, allowed_dirs=(data_dir,))
    resolver = ModelResolver(config.readable_dirs, AppConfig().models_dir, HubProbe(offline=True))
    jobs = JobManager(Layout(data_dir / "finetune"), poll_s=0.5)
    service = FinetuneService(jobs.layout, jobs.store, resolver, rows_from_browser(DatasetBrowser.from_config(config)),
                              lambda: ("cpu", False))
    settings = TrainSettings(max_steps=args.steps, batch_size=args.batch, learning_rate=args.lr, lora_rank=16,
                             lora_alpha=32, val_split=0.05, cutoff_len=160, save_steps=max(1, args.steps // 4),
                             scheduler="cosine", warmup_ratio=0.05, threads=args.threads)
    job, note = service.start(BASE, DataSpec(str(source), "instruction", "question", "answer", "chat"), settings,
                              name="json-extraction")
    logging.info("%s %s", note, service.inspect(BASE, DataSpec(str(source), "instruction", "question", "answer",
                                                              "chat"), settings).summary())
    start = time.perf_counter()
    jobs.start()
    while jobs.store.get(job.id).status in ACTIVE:
        time.sleep(2)
        j = jobs.store.get(job.id)
        logging.info("step %s/%s eta %s", j.step, j.max_steps, j.eta_s and round(j.eta_s))
    wall = time.perf_counter() - start
    jobs.close()
    job = jobs.store.get(job.id)
    if job.status != "done":
        raise SystemExit(f"the run ended {job.status}: {job.message}")
    losses = jobs.store.losses(job.id)
    facts = {"job_status": job.status, "steps": job.step, "wall_s_incl_start": round(wall, 1),
             "train_tokens_per_s": round(job.tokens_per_s or 0, 1),
             "first_train_loss": next(v for _, k, v in losses if k == "train"),
             "last_validation_loss": [v for _, k, v in losses if k == "validation"][-1:]}
    return facts, str(jobs.layout.adapter(job.id))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data_dir = Path(tempfile.mkdtemp(prefix="demo-finetune-"))
    source = data_dir / "json-extraction.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in demo_task.examples(args.train, seed=1)))
    test = demo_task.examples(args.test, seed=2, held_out=True)
    resolver = ModelResolver(AppConfig(data_dir=data_dir).readable_dirs, AppConfig().models_dir,
                             HubProbe(offline=True))
    engine = TextEngine(ModelCache(max_models=1), resolver, choose_placement("cpu", "float32"), max_batch=0)
    before = answers(engine, BASE, test)
    facts, adapter = train(args, data_dir, source)
    after = answers(engine, adapter, test)
    print(json.dumps({
        "task": "JSON extraction (name, age, city); held-out names and cities never seen in training", "base": BASE,
        "train_examples": args.train, "test_examples": args.test, "settings": vars(args), **facts,
        "exact_match_before": score(before, test), "exact_match_after": score(after, test),
        "side_by_side": [{"sentence": t["question"].split("\n", 1)[1], "expected": t["answer"], "before": b,
                          "after": a} for t, b, a in list(zip(test, before, after, strict=True))[:4]],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }, indent=2))


if __name__ == "__main__":
    main()
