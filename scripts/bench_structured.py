"""Structured output on the embedded model: validity with and without a JSON schema, and what the constraint costs.

Run it holding the shared lock (it takes minutes on 2 cores):

    flock /tmp/bench.lock .venv/bin/python scripts/bench_structured.py --out docs/bench_structured.json

Three measurements, side by side in one run on the same engine and prompts (greedy):
1. 100 prompts asking for a person as JSON, each answered with the schema enforced and without it: the share of
   replies that parse and validate (`jsonschema`).
2. Decoding speed one request at a time, constrained and free alternating on the same prompts: tokens/s after the
   first token, median; the ratio constrained / free (target >= 0.8).
3. Four people streaming at once, each sending the next request as soon as a reply ends, for a fixed time: four
   free, then two constrained + two free, alternating rounds; aggregate tokens/s and the ratio (target >= 0.9).
   `--parts streams_equal` repeats it with every reply cut at 32 tokens (a diagnosis: constrained replies are
   shorter, so those people send more prompts to prefill; at equal lengths only the constraint differs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                           "city": {"type": "string", "maxLength": 40}},
          "required": ["name", "age", "city"], "additionalProperties": False}
JOBS = ["doctor", "teacher", "pilot", "farmer", "painter", "baker", "nurse", "lawyer", "chef", "engineer",
        "singer", "writer", "sailor", "miner", "tailor", "judge", "dentist", "plumber", "librarian", "gardener"]
ASKS = ["Describe a {} as JSON with name, age and city.", "Give me a {} as a JSON object (name, age, city).",
        "Invent a {}. Reply in JSON with the keys name, age and city.", "JSON for a {}: name, age, city.",
        "Return a JSON record of a fictional {} with name, age and city."]
PROMPTS = [ask.format(job) for ask in ASKS for job in JOBS]  # 100


def engine(kind: str, threads: int):
    from config import default_data_dir
    from engines.cache import ModelCache
    from engines.device import choose_placement
    from engines.resolve import HubProbe, ModelResolver
    from engines.text import TextEngine

    data = default_data_dir()
    resolver = ModelResolver((data,), data / "models", HubProbe(offline=True))
    text = TextEngine(ModelCache(max_models=1), resolver, choose_placement("cpu", "float32"), engine=kind,
                      max_batch=4, threads=threads)
    text.load(MODEL)
    return text


def ask(text, prompt: str, constraint, new_tokens: int) -> dict:
    from engines.params import GenerationParams

    params = GenerationParams(temperature=0, repetition_penalty=1.0, max_new_tokens=new_tokens)
    held = {"constraint": constraint} if constraint is not None else {}
    updates = list(text.chat(MODEL, [{"role": "user", "content": prompt}], params, **held))
    stats = updates[-1].stats
    return {"text": "".join(u.delta for u in updates), "tokens": stats.generated_tokens,
            "tokens_per_s": stats.tokens_per_s, "ttft_s": stats.ttft_s, "reason": stats.finish_reason}


def valid(reply: str) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(reply), SCHEMA)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def validity(text, constraint, prompts: list[str], new_tokens: int) -> dict:
    """Every prompt with and without the schema, four at a time (validity does not depend on the batch)."""
    out = {}
    for name, c in (("constrained", constraint), ("free", None)):
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda p, c=c: ask(text, p, c, new_tokens), prompts))
        ok = sum(valid(r["text"]) for r in replies)
        out[name] = {"requests": len(replies), "valid": ok, "valid_pct": round(100 * ok / len(replies), 1),
                     "cut_by_length": sum(r["reason"] == "length" for r in replies),
                     "example": replies[0]["text"][:200]}
    return out


def speed(text, constraint, prompts: list[str], new_tokens: int) -> dict:
    """One request at a time, alternating free and constrained on each prompt; median decode tokens/s."""
    runs: dict[str, list[dict]] = {"constrained": [], "free": []}
    for prompt in prompts:
        runs["free"].append(ask(text, prompt, None, new_tokens))
        runs["constrained"].append(ask(text, prompt, constraint, new_tokens))
    out = {k: {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in v if r["tokens"] > 1),
               "ttft_s": statistics.median(r["ttft_s"] for r in v),
               "tokens": sum(r["tokens"] for r in v)} for k, v in runs.items()}
    out["ratio"] = round(out["constrained"]["tokens_per_s"] / out["free"]["tokens_per_s"], 3)
    return out


def person(text, prompts: list[str], constraint, deadline: float, new_tokens: int) -> int:
    """One person streaming replies one after another until `deadline`: the tokens that arrived before it."""
    from engines.params import GenerationParams

    params = GenerationParams(temperature=0, repetition_penalty=1.0, max_new_tokens=new_tokens)
    held = {"constraint": constraint} if constraint is not None else {}
    tokens, i = 0, 0
    while time.perf_counter() < deadline:
        for update in text.chat(MODEL, [{"role": "user", "content": prompts[i % len(prompts)]}], params, **held):
            if time.perf_counter() >= deadline:
                break  # leaving the loop closes the stream, which stops the request
            tokens += len(update.tokens)
        i += 1
    return tokens


def streams(text, constraints: list, seconds: float, new_tokens: int) -> float:
    """Aggregate tokens/s of four people each streaming without pause for `seconds` (constrained replies are
    shorter, so each person sends the next request as soon as one ends: the batch stays four wide)."""
    deadline = time.perf_counter() + seconds
    with ThreadPoolExecutor(len(constraints)) as pool:
        counts = list(pool.map(lambda i: person(text, PROMPTS[i::4], constraints[i], deadline, new_tokens),
                               range(len(constraints))))
    return sum(counts) / seconds


def concurrency(text, constraint, rounds: int, seconds: float, new_tokens: int) -> dict:
    """Four free streams against two constrained + two free, alternating rounds on the same prompts."""
    free, mixed = [], []
    for _ in range(rounds):
        free.append(streams(text, [None] * 4, seconds, new_tokens))
        mixed.append(streams(text, [constraint, constraint, None, None], seconds, new_tokens))
    out = {"four_free_tokens_per_s": round(statistics.median(free), 1),
           "two_constrained_two_free_tokens_per_s": round(statistics.median(mixed), 1),
           "rounds": rounds, "seconds_each": seconds}
    out["ratio"] = round(out["two_constrained_two_free_tokens_per_s"] / out["four_free_tokens_per_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="openvino", choices=["openvino", "torch"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), help="for the validity check (at most 100)")
    parser.add_argument("--speed-prompts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20, help="of each four-stream round")
    parser.add_argument("--parts", default="validity,speed,streams")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from engines import constraints

    text = engine(args.engine, args.threads)
    constraint = constraints.json_schema(SCHEMA)
    ask(text, PROMPTS[0], constraint, 8)  # the first constrained request compiles the engine's grammar machinery
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "engine": args.engine, "model": MODEL,
              "threads": args.threads, "max_new_tokens": args.new_tokens, "schema": SCHEMA}
    parts = args.parts.split(",")
    if "validity" in parts:
        report["validity"] = validity(text, constraint, PROMPTS[:args.prompts], args.new_tokens)
    if "speed" in parts:
        report["speed_one_at_a_time"] = speed(text, constraint, PROMPTS[::5][:args.speed_prompts], args.new_tokens)
    if "streams" in parts:
        report["four_streams"] = concurrency(text, constraint, args.rounds, args.seconds, args.new_tokens)
    if "streams_equal" in parts:  # diagnosis: every reply cut at the constrained replies' length (about 30 tokens),
        # so that all four people start new requests (and prompts) equally often and only the constraint differs
        report["four_streams_equal_length"] = concurrency(text, constraint, args.rounds, args.seconds, 32)
    text.cache.close()
    out = json.dumps(report, indent=2)
    print(out)
    if args.out:
        args.out.write_text(out + "\n")


if __name__ == "__main__":
    main()
