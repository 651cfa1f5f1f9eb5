"""Fine-tune benchmark: training tokens/s through the app's job queue and runner against a plain peft + Trainer
script on the same examples and settings, and one person's chat tokens/s while a job trains against without.

    flock /tmp/bench.lock .venv/bin/python -m scripts.bench_finetune [--steps 30] [--chats 4]

Prints one JSON object. Both training sides run as subprocesses with the same thread count, one after the other;
tokens/s counts the training tokens of the steps run over Trainer's own train_runtime, the same way on both sides.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
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
from finetune.jobs import ACTIVE, RUNNING
from finetune.layout import Layout
from finetune.manager import JobManager
from finetune.service import FinetuneService, rows_from_browser
from finetune.settings import TrainSettings
from services import foreground_busy
from serving.sessions import StopRegistry

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
ALLOWED: list[Path] = []  # --base folders (a dry run on a tiny model)
SPEC = dict(kind="instruction", prompt_column="question", response_column="answer", template="chat")
PROMPT = [{"role": "user", "content": "Write a short story about a dragon who learns to read."}]


def plain_train(job_file: Path) -> None:
    """The reference: peft + Trainer on the job's own formatted examples, nothing else (run in a subprocess)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    job = json.loads(job_file.read_text())
    s = job["settings"]
    torch.set_num_threads(s["threads"])
    tok = AutoTokenizer.from_pretrained(job["location"])
    model = AutoModelForCausalLM.from_pretrained(job["location"], dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=s["lora_rank"], lora_alpha=s["lora_alpha"], target_modules="all-linear",
                                             lora_dropout=s["lora_dropout"], task_type="CAUSAL_LM"))
    rows = []
    for line in Path(job["examples"]).read_text().splitlines():
        e = json.loads(line)
        p = tok(e["prompt"], add_special_tokens=False).input_ids
        c = tok(e["completion"], add_special_tokens=False).input_ids
        rows.append({"input_ids": (p + c)[:s["cutoff_len"]], "labels": ([-100] * len(p) + c)[:s["cutoff_len"]]})
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=s["batch_size"],
                             learning_rate=s["learning_rate"], max_steps=s["max_steps"], seed=s["seed"],
                             logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True,
                             remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    metrics = trainer.train().metrics
    tokens_per_step = sum(len(r["input_ids"]) for r in rows) / len(rows) * s["batch_size"]
    print(json.dumps({"train_runtime": metrics["train_runtime"],
                      "tokens_per_s": s["max_steps"] * tokens_per_step / metrics["train_runtime"]}))


def make_service(data_dir: Path, busy=None) -> tuple[JobManager, FinetuneService, ModelResolver]:
    config = AppConfig(offline=True, data_dir=data_dir, allowed_dirs=(data_dir, *ALLOWED))
    resolver = ModelResolver(config.readable_dirs, AppConfig().models_dir, HubProbe(offline=True))
    jobs = JobManager(Layout(data_dir / "finetune"), busy=busy, poll_s=0.25)
    rows = rows_from_browser(DatasetBrowser.from_config(config))
    return jobs, FinetuneService(jobs.layout, jobs.store, resolver, rows, lambda: ("cpu", False)), resolver


def run_job(service: FinetuneService, jobs: JobManager, source: Path, settings: TrainSettings):
    job, _ = service.start(BASE, DataSpec(str(source), **SPEC), settings)
    start = time.perf_counter()
    jobs.start()
    while jobs.store.get(job.id).status in ACTIVE:
        time.sleep(0.5)
    return jobs.store.get(job.id), time.perf_counter() - start


def training_ratio(args, data_dir: Path, source: Path) -> dict:
    jobs, service, _ = make_service(data_dir)
    settings = TrainSettings(max_steps=args.steps, batch_size=8, learning_rate=1e-3, lora_rank=16, lora_alpha=32,
                             val_split=0, cutoff_len=160, save_steps=args.steps, threads=args.threads)
    job, app_wall = run_job(service, jobs, source, settings)
    jobs.close()
    spec = {"settings": settings.to_dict(), "location": job.data["base_location"],
            "examples": job.data["examples_file"]}
    spec_file = data_dir / "plain.json"
    spec_file.write_text(json.dumps(spec))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "scripts.bench_finetune", "--plain", str(spec_file)],
                         capture_output=True, text=True, check=True)
    plain_wall = time.perf_counter() - start
    plain = json.loads(out.stdout.strip().splitlines()[-1])
    return {"steps": args.steps, "app_tokens_per_s": round(job.tokens_per_s, 1),
            "plain_tokens_per_s": round(plain["tokens_per_s"], 1),
            "ratio_app_vs_plain": round(job.tokens_per_s / plain["tokens_per_s"], 3),
            "app_wall_s_incl_start": round(app_wall, 1), "plain_wall_s_incl_start": round(plain_wall, 1)}


def chat_tokens_per_s(engine: TextEngine, registry: StopRegistry, count: int) -> float:
    rates = []
    params = GenerationParams(temperature=0, max_new_tokens=64, repetition_penalty=1.0)
    for _ in range(count):
        with registry.generation("bench") as stop:
            start, tokens = time.perf_counter(), 0
            for update in engine.chat(BASE, PROMPT, params, stop=stop):
                tokens += bool(update.delta)
            rates.append(tokens / (time.perf_counter() - start))
    return sorted(rates)[len(rates) // 2]


def chat_ratio(args, data_dir: Path, source: Path) -> dict:
    """One person chatting, with no job and then while a long job trains (it yields as it does in the app)."""
    registry = StopRegistry()
    busy = foreground_busy(registry, warmup_s=0)
    jobs, service, resolver = make_service(data_dir / "chat", busy=busy)
    source = Path(shutil.copy(source, data_dir / "chat" / source.name))
    engine = TextEngine(ModelCache(max_models=1), resolver, choose_placement("cpu", "float32"),
                        threads=args.threads, max_batch=0)
    engine.load(BASE)
    chat_tokens_per_s(engine, registry, 1)  # warm-up: the first generations after a load are slower
    alone = chat_tokens_per_s(engine, registry, args.chats)
    settings = TrainSettings(max_steps=100_000, batch_size=8, learning_rate=1e-3, val_split=0, cutoff_len=160,
                             save_steps=100_000, threads=args.threads)
    job, _ = service.start(BASE, DataSpec(str(source), **SPEC), settings)
    jobs.start()
    while jobs.store.get(job.id).status != RUNNING or jobs.store.get(job.id).step < 3:
        time.sleep(0.5)
    step_before = jobs.store.get(job.id).step
    during = chat_tokens_per_s(engine, registry, args.chats)
    time.sleep(args.quiet_s)  # the job goes on once people stop generating
    step_after_quiet = jobs.store.get(job.id).step
    service.stop(job.id)
    while jobs.store.get(job.id).status in ACTIVE:
        time.sleep(0.5)
    jobs.close(kill=True)
    return {"chat_tokens_per_s_alone": round(alone, 1), "chat_tokens_per_s_during_training": round(during, 1),
            "ratio_during_vs_alone": round(during / alone, 3), "job_steps_while_chatting_and_after":
            [step_before, step_after_quiet], "job_final_status": jobs.store.get(job.id).status}


def set_base(base: str) -> None:
    global BASE
    BASE = base
    if Path(base).is_dir():
        ALLOWED.append(Path(base).resolve().parent)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plain", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chats", type=int, default=4)
    parser.add_argument("--quiet-s", type=float, default=15.0)
    parser.add_argument("--base", default=BASE, help="a hub id or a folder (a tiny model for a dry run)")
    args = parser.parse_args()
    set_base(args.base)
    if args.plain:
        plain_train(Path(args.plain))
        return
    data_dir = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    source = data_dir / "json-extraction.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in demo_task.examples(400, seed=1)))
    result = {"base": BASE, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads}
    result["training"] = training_ratio(args, data_dir, source)
    result["chat"] = chat_ratio(args, data_dir, source)
    result["targets"] = {"training_ratio_>=0.9": result["training"]["ratio_app_vs_plain"] >= 0.9,
                         "chat_ratio_>=0.5": result["chat"]["ratio_during_vs_alone"] >= 0.5}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
