"""Text-to-image speed: the raw diffusers pipeline call vs the same request through the app (gradio_client). JSON.

Usage: HF_HUB_OFFLINE=1 python scripts/bench_image.py --threads 1 --runs 10
Both sides use the embedded model, 64x64, 20 steps, guidance 4, one image, fixed seeds, after a warm-up. The app is
the Text-to-image tab launched as a separate server process on a free port (one server, one client, as deployed),
driven over HTTP with gradio_client like any API user. The raw call and the app call alternate run by run (the order
flips each run), so load from other processes on shared cores falls on both sides alike; `pair_ratio_median` is the
median of the per-run app/raw ratios. `app_pipeline_s` is the pipeline time the app itself measured and
`app_overhead_s` the rest (queue, HTTP, PNG with metadata, client download). --threads is the app's configured torch
thread count (app.py --threads; 1 suits the embedded model, see engines/image.py SMALL_DENOISER_PARAMS); the engine
reports what it used and the raw call runs with that same count (`torch_threads`), so both sides do equal work.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REPO = Path(__file__).resolve().parent.parent
PROMPT = "a large blue square in the center on a white background"
SETTINGS = dict(num_inference_steps=20, guidance_scale=4.0, guidance_rescale=0.7, height=64, width=64)


def serve(port: int, threads: int) -> None:
    """Run the Text-to-image tab as its own server process (so the client's HTTP work shares no GIL with it)."""
    import gradio as gr
    import torch

    from config import AppConfig
    from engines.cache import ModelCache
    from engines.catalog import load_catalog
    from engines.device import Placement
    from engines.image import ImageEngine
    from engines.resolve import HubProbe, ModelResolver
    from serving.sessions import StopRegistry
    from ui import image_tab

    torch.set_num_threads(threads)  # as app.py does for --threads
    config = AppConfig(port=port, offline=True, preload=False, data_dir=Path(tempfile.mkdtemp()))
    engine = ImageEngine(ModelCache(), ModelResolver(config.readable_dirs, config.models_dir, HubProbe(True)),
                         lambda: Placement("cpu", "float32", "cpu"))
    with gr.Blocks() as demo:
        image_tab.build(image_tab.ImageDeps(engine, StopRegistry(), catalog=load_catalog(config.catalog_path)))
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.block_thread()


def start_server(threads: int) -> tuple[subprocess.Popen, object]:
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--threads", str(threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            # ssl_verify=False: plain http on localhost has no TLS to verify; verifying makes httpx load the CA
            # bundle for every request and file download (~25 ms each, measured) - the client library's cost
            return server, Client(f"http://127.0.0.1:{port}/", verbose=False, ssl_verify=False)
        except Exception:  # not up yet
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "assets" / "t2i-model"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def time_raw(pipe, settings: dict, seed: int) -> float:
    import torch

    start = time.perf_counter()
    pipe(PROMPT, generator=torch.Generator().manual_seed(seed), **settings)
    return time.perf_counter() - start


def time_app(client, steps: int, seed: int) -> tuple[float, dict]:
    start = time.perf_counter()
    _, _, info = client.predict(prompt=PROMPT, negative_prompt="", model="hf-playground/tiny-t2i-64",
                                steps=steps, guidance_scale=4.0, seed=seed, width=64, height=64,
                                num_images=1, scheduler="default", guidance_rescale=0.7,
                                api_name="/text_to_image")
    return time.perf_counter() - start, info


def measure(args) -> tuple[int, list[tuple[float, float, dict]]]:
    """(the app's torch thread count, one (raw s, app s, app info) row per run)."""
    import torch
    from diffusers import AutoPipelineForText2Image

    server, client = start_server(args.threads)
    settings = SETTINGS | {"num_inference_steps": args.steps}
    rows = []
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(args.model)
        pipe.set_progress_bar_config(disable=True)
        threads = time_app(client, args.steps, 0)[1]["torch_threads"]  # warm-up: the first calls fault pages in
        torch.set_num_threads(threads)
        time_raw(pipe, settings, 0)
        for i in range(1, args.runs + 1):
            if i % 2:
                r = time_raw(pipe, settings, i)
                wall, info = time_app(client, args.steps, i)
            else:
                wall, info = time_app(client, args.steps, i)
                r = time_raw(pipe, settings, i)
            rows.append((r, wall, info))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return threads, rows


def summarize(args, threads: int, rows: list[tuple[float, float, dict]]) -> dict:
    med = statistics.median
    raw_s, wall_s = [r[0] for r in rows], [r[1] for r in rows]
    inside = [r[2]["generate_s"] for r in rows]
    return {
        "threads": args.threads, "torch_threads": threads, "runs": args.runs, "steps": args.steps, "size": "64x64",
        "images_per_call": 1,
        "raw_pipeline_s": round(med(raw_s), 3),
        "app_end_to_end_s": round(med(wall_s), 3),
        "app_over_raw": round(med(wall_s) / med(raw_s), 3),
        "pair_ratio_median": round(med(w / r for r, w in zip(raw_s, wall_s, strict=False)), 3),
        "app_pipeline_s": round(med(inside), 3),
        "app_overhead_s": round(med(w - g for w, g in zip(wall_s, inside, strict=False)), 3),
        "raw_all_s": [round(t, 3) for t in raw_s],
        "app_all_s": [round(t, 3) for t in wall_s],
        "app_pipeline_all_s": inside,
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.threads)
        return {}
    result = summarize(args, *measure(args))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
