"""Where a warm load of the embedded chat model goes on the OpenVINO engine, part by part, with and without a spare.

A warm load is a load of a model whose OpenVINO folder is already prepared (a `/load_model` after an unload). An
unload leaves a spare engine process (engines/openvino_process.keep_spare: Python started, OpenVINO GenAI imported)
that the next load takes. Each round, after a pause (a person picking the next model), loads the model twice:
once with the spare thrown away first (a fresh process, as before spares), once taking it. Timed: a bare Python
importing openvino_genai, the engine process's build (`EngineProcess.load`), the first short generation
(`_warm_up`) and the whole of `openvino_text.load_folder`; after each load that took the spare, the first token of
the first three chats and the engine process's resident memory by what holds it (heap, anonymous, libraries, the
weights file), at load and after those chats. One JSON object on stdout.

    flock /tmp/bench.lock python scripts/bench_warm_load.py [--rounds 4] [--pause-s 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def timed(times: dict[str, list[float]], key: list[str], name: str, fn: Callable) -> Callable:
    """`fn`, recording its seconds under `name` + the current `key[0]`."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times.setdefault(name + key[0], []).append(round(time.perf_counter() - start, 3))
    return wrapper


def prepared_folder() -> Path:
    from config import AppConfig
    from engines import gguf_openvino
    from engines.embedded import EMBEDDED, package_file

    gguf = package_file(EMBEDDED[MODEL])
    models_dir = AppConfig.from_args([]).models_dir
    return gguf_openvino.ensure_ir(gguf, gguf_openvino.folder_for(gguf, models_dir), MODEL)


def engine_memory_mb(pid: int) -> dict[str, float]:
    """The engine process's resident memory by what holds it (from /proc/PID/smaps)."""
    held: dict[str, int] = {}
    kind = "other"
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):
                path = fields[5] if len(fields) > 5 else ""
                kind = ("weights_file" if path.endswith("/openvino_model.bin") else "libraries" if ".so" in path
                        else "heap" if path == "[heap]" else "anonymous" if not path else "other")
            elif fields[0] == "Rss:":
                held[kind] = held.get(kind, 0) + int(fields[1])
    return {k: round(v / 1024, 1) for k, v in sorted(held.items())} | {"total": round(sum(held.values()) / 1024, 1)}


def first_tokens(loaded, n: int = 3) -> list[float]:
    """Seconds to the first token of the first `n` chats after the load, one after another."""
    import threading

    from engines.params import GenerationParams

    tm = loaded.value
    ids = tm.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France? Answer in "
                                             "one sentence."}], add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    seconds = []
    for _ in range(n):
        start = time.perf_counter()
        req = tm.batcher.submit(ids, GenerationParams(temperature=0, max_new_tokens=8), 0, threading.Event())
        first = None
        while req.out.get()[0] == "token":
            first = first or time.perf_counter() - start
        seconds.append(round(first or 0.0, 3))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pause-s", type=float, default=1.0, help="wait after each unload before the next load")
    args = parser.parse_args()
    from engines import openvino_process, openvino_text

    folder = prepared_folder()
    times: dict[str, list[float]] = {}
    key = [""]
    openvino_text._warm_up = timed(times, key, "warm_up_s", openvino_text._warm_up)
    openvino_process.EngineProcess.load = timed(times, key, "build_s", openvino_process.EngineProcess.load)
    load = timed(times, key, "load_folder_s", openvino_text.load_folder)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import openvino_genai"], check=True)
    times["python_start_and_import_s"] = [round(time.perf_counter() - start, 3)]
    load(folder, MODEL, "embedded", threads=None, max_batch=8, max_waiting=16).value.batcher.close()  # first load
    for _ in range(args.rounds):
        for key[0] in ("_fresh_process", "_spare_process"):
            time.sleep(args.pause_s)
            if key[0] == "_fresh_process":
                openvino_process.start("thrown away").close()  # the spare the unload left
            loaded = load(folder, MODEL, "embedded", threads=None, max_batch=8, max_waiting=16)
            if key[0] == "_spare_process":  # what the first people after a load meet, and what the engine holds
                pid = loaded.value.batcher.process.proc.pid
                times.setdefault("engine_mb_at_load", []).append(engine_memory_mb(pid))
                times.setdefault("first_three_chats_first_token_s", []).append(first_tokens(loaded))
                times.setdefault("engine_mb_after_them", []).append(engine_memory_mb(pid))
            loaded.value.batcher.close()  # as an unload does: a spare engine process starts
    medians = {f"median_{k}": round(statistics.median(v), 3) for k, v in times.items() if k.endswith("process")}
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "folder": str(folder),
                      "pause_s": args.pause_s, "rounds": times, **medians}))


if __name__ == "__main__":
    main()
