"""Where a warm load of the embedded chat model goes on the OpenVINO engine, part by part.

A warm load is a load of a model whose OpenVINO folder is already prepared (a `/load_model` after an unload). Each
round times: starting a bare Python that imports openvino_genai (what the engine process pays before it builds),
the engine process built from the folder (start + import + build, `EngineProcess.load`), the app's first short
generation after it (`_warm_up`), and the whole of `openvino_text.load_folder`. One JSON object on stdout.

    flock /tmp/bench.lock python scripts/bench_warm_load.py [--rounds 4]
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


def timed(times: dict[str, list[float]], name: str, fn: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times.setdefault(name, []).append(round(time.perf_counter() - start, 3))
    return wrapper


def prepared_folder() -> Path:
    from config import AppConfig
    from engines import gguf_openvino
    from engines.embedded import EMBEDDED, package_file

    gguf = package_file(EMBEDDED[MODEL])
    models_dir = AppConfig.from_args([]).models_dir
    return gguf_openvino.ensure_ir(gguf, gguf_openvino.folder_for(gguf, models_dir), MODEL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    from engines import openvino_process, openvino_text

    folder = prepared_folder()
    times: dict[str, list[float]] = {}
    openvino_text._warm_up = timed(times, "warm_up_s", openvino_text._warm_up)
    openvino_process.EngineProcess.load = timed(times, "engine_process_start_and_build_s",
                                                openvino_process.EngineProcess.load)
    for _ in range(args.rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import openvino_genai"], check=True)
        times.setdefault("python_start_and_import_s", []).append(round(time.perf_counter() - start, 3))
        start = time.perf_counter()
        loaded = openvino_text.load_folder(folder, MODEL, "embedded", threads=None, max_batch=8, max_waiting=16)
        times.setdefault("load_folder_s", []).append(round(time.perf_counter() - start, 3))
        loaded.value.batcher.close()
    medians = {f"median_{k}": round(statistics.median(v), 3) for k, v in times.items()}
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "folder": str(folder),
                      "rounds": times, **medians}))


if __name__ == "__main__":
    main()
