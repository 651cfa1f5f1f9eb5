"""Text-to-image speed: the raw diffusers pipeline call vs the same request through the app (gradio_client). JSON.

Usage: HF_HUB_OFFLINE=1 python scripts/bench_image.py --threads 2 --runs 10
Both sides use the embedded model, 64x64, 20 steps, guidance 4, one image, fixed seeds, after a warm-up. The app is
the Text-to-image tab launched as a separate server process on a free port (one server, one
client, as deployed), driven over HTTP with gradio_client like any API user. The raw call runs first, alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PROMPT = "a large blue square in the center on a white background"


def raw_times(model: str, runs: int, steps: int) -> list[float]:
    import torch
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        pipe(PROMPT, num_inference_steps=steps, guidance_scale=4.0, guidance_rescale=0.7, height=64, width=64,
             generator=torch.Generator().manual_seed(i))
        times.append(time.perf_counter() - start)
    return times[1:]


def serve(port: int, threads: int) -> None:
    """Run the Text-to-image tab as its own server process (so the client's HTTP work shares no GIL with it)."""
    import gradio as gr
    import torch

    from components import image_tab
    from components.common import StopRegistry
    from config import AppConfig
    from models.cache import ModelCache
    from models.catalog import load_catalog
    from models.device import Placement
    from models.image import ImageEngine
    from models.resolve import HubProbe, ModelResolver

    torch.set_num_threads(threads)
    config = AppConfig(port=port, offline=True, preload=False, data_dir=Path(tempfile.mkdtemp()))
    engine = ImageEngine(ModelCache(), ModelResolver(config.readable_dirs, config.models_dir, HubProbe(True)),
                         lambda: Placement("cpu", "float32", "cpu"))
    with gr.Blocks() as demo:
        image_tab.build(engine, load_catalog(config.catalog_path), config, StopRegistry())
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.block_thread()


def app_times(runs: int, steps: int, threads: int) -> tuple[list[float], list[float]]:
    import socket
    import subprocess

    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--threads", str(threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, inside = [], []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # not up yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        for i in range(runs + 1):
            start = time.perf_counter()
            _, _, info = client.predict(prompt=PROMPT, negative_prompt="", model="hf-playground/tiny-t2i-64",
                                        steps=steps, guidance_scale=4.0, seed=i, width=64, height=64, num_images=1,
                                        scheduler="default", guidance_rescale=0.7, api_name="/text_to_image")
            wall.append(time.perf_counter() - start)
            inside.append(info["generate_s"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    return wall[1:], inside[1:]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "assets" / "t2i-model"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, args.threads)
        return {}
    import torch

    torch.set_num_threads(args.threads)
    raw = raw_times(args.model, args.runs, args.steps)
    wall, inside = app_times(args.runs, args.steps, args.threads)
    med = statistics.median
    result = {
        "threads": args.threads, "runs": args.runs, "steps": args.steps, "size": "64x64", "images_per_call": 1,
        "raw_pipeline_s": round(med(raw), 3),
        "app_end_to_end_s": round(med(wall), 3),
        "app_pipeline_s": round(med(inside), 3),
        "app_over_raw": round(med(wall) / med(raw), 3),
        "raw_all_s": [round(t, 3) for t in raw],
        "app_all_s": [round(t, 3) for t in wall],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
