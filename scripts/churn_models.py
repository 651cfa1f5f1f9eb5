"""Model churn: load, use and unload the chat model and the image model N times; resident memory after each unload.

Each cycle loads the embedded SmolLM2 through TextEngine and answers one short chat, loads the embedded 64x64
text-to-image model through ImageEngine and draws one image, then unloads both through the shared ModelCache (which
drops the last reference and runs gc). After the unload the process's resident memory (RSS) is read, and whether each
model object was really freed (a weak reference to it died). glibc keeps freed heap pages unless asked to hand them
back, so RSS is read twice: after the app's own unload, and after `malloc_trim(0)`.

    make churn     # = PYTHONPATH=. python scripts/churn_models.py --cycles 20
Prints one JSON object; exit status 1 when the last cycle's RSS is more than 10% above the first's.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MB = 2**20


@dataclass
class Step:
    """One model of a cycle: load it, use it once, and name the object that must be freed by the unload."""

    name: str
    load_and_use: Callable[[], Any]  # returns the object whose memory the unload must free


def trim_heap() -> bool:
    """Ask glibc to return free heap pages to the OS (False where there is no glibc)."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def churn(cache, steps: list[Step], cycles: int) -> list[dict[str, Any]]:
    """Run `cycles` load/use/unload cycles; one row per cycle with RSS after the unload and what was freed."""
    process, rows = psutil.Process(), []
    for cycle in range(1, cycles + 1):
        start, refs = time.perf_counter(), {}
        for step in steps:
            refs[step.name] = weakref.ref(step.load_and_use())
        loaded_rss = process.memory_info().rss
        for key in list(cache.keys()):
            cache.unload(key)  # the app's own unload: drop the entry, gc.collect(), empty accelerator caches
        gc.collect()
        rss = process.memory_info().rss
        trim_heap()
        rows.append({"cycle": cycle, "rss_loaded_mb": round(loaded_rss / MB, 1), "rss_mb": round(rss / MB, 1),
                     "rss_trimmed_mb": round(process.memory_info().rss / MB, 1),
                     "freed": {name: ref() is None for name, ref in refs.items()},
                     "seconds": round(time.perf_counter() - start, 2)})
    return rows


def summary(rows: list[dict[str, Any]], tolerance: float = 0.10) -> dict[str, Any]:
    """First and last cycle, the ratios, and whether the last is within `tolerance` of the first."""
    first, last = rows[0], rows[-1]
    ratio = last["rss_mb"] / first["rss_mb"]
    return {"cycles": len(rows), "first": first, "last": last, "last_over_first": round(ratio, 3),
            "last_over_first_trimmed": round(last["rss_trimmed_mb"] / first["rss_trimmed_mb"], 3),
            "within_10_percent": ratio <= 1 + tolerance,
            "every_model_freed": all(all(r["freed"].values()) for r in rows),
            "rss_mb_by_cycle": [r["rss_mb"] for r in rows]}


def app_steps(data_dir: Path, threads: int) -> tuple[Any, list[Step]]:
    """The embedded chat and image models behind the app's own engines and one shared cache."""
    from engines.cache import ModelCache
    from engines.catalog import shipped_catalog
    from engines.device import choose_placement
    from engines.image import EMBEDDED_T2I, ImageEngine
    from engines.image_params import parse_image_params
    from engines.params import GenerationParams
    from engines.resolve import REPO_MODELS, HubProbe, ModelResolver
    from engines.text import TextEngine

    cache = ModelCache(max_models=2)
    resolver = ModelResolver((REPO_MODELS[EMBEDDED_T2I].parent,), data_dir / "models", HubProbe(offline=True))
    placement = choose_placement("cpu", "float32")
    text = TextEngine(cache, resolver, placement, max_batch=4, threads=threads)
    image = ImageEngine(cache, resolver, placement, threads=threads)
    chat_model = shipped_catalog().default("chat")
    question = [{"role": "user", "content": "What is the capital of France?"}]

    def chat() -> Any:
        reply = "".join(u.delta for u in text.chat(chat_model, question, GenerationParams(temperature=0,
                                                                                            max_new_tokens=8)))
        assert reply.strip(), "the chat model answered nothing"
        return text.load(chat_model).model

    def draw() -> Any:
        result = image.generate(EMBEDDED_T2I, parse_image_params("a small red circle", steps=4, width=64, height=64,
                                                                 seed=1))
        assert result.images, "the image model drew nothing"
        return image.load(EMBEDDED_T2I).pipe

    return cache, [Step("chat " + chat_model, chat), Step("image " + EMBEDDED_T2I, draw)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None, help="where the converted chat model is kept")
    parser.add_argument("--models", choices=["both", "chat", "image"], default="both")
    parser.add_argument("--no-trace", action="store_true",
                        help="run the image denoiser eagerly (engines/image_trace.py off), to compare")
    args = parser.parse_args()
    import torch

    from config import default_data_dir
    from engines import image_trace

    if args.no_trace:
        image_trace.install = lambda pipe, device: None
    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or default_data_dir()
    cache, steps = app_steps(data_dir, args.threads)
    steps = [s for s in steps if args.models == "both" or s.name.startswith(args.models)]
    start = time.perf_counter()
    result = summary(churn(cache, steps, args.cycles))
    result.update(threads=args.threads, models=args.models, traced=not args.no_trace,
                  wall_s=round(time.perf_counter() - start),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(json.dumps(result, indent=1))
    return 0 if result["within_10_percent"] and result["every_model_freed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
