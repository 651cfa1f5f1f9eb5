"""Evaluate the embedded text-to-image model: prompt following on shapes, emoji recall, and speed. Prints JSON.

Shapes (--shapes prompts, seeded sample of every colour/shape/size/position/background combination):
  each prompt is generated once (its own seed); the image is judged by pixels, with no learned model:
  - background = median colour of the 1-pixel border; d = each pixel's largest channel difference from it;
    nothing differs by more than 60/255: "nothing drawn", counted wrong on every attribute;
  - foreground = pixels with d above half the image's largest d (the half-contrast outline, fair to soft edges);
  - colour = the palette colour (scripts/t2i_data.COLOURS, RGB distance) nearest the median colour of the core
    pixels (d above 3/4 of the largest d);
  - shape = fill ratio of the foreground inside its bounding box: >= 0.86 square, >= 0.63 circle, else triangle;
  - size = bounding-box side >= 19 px is "large"; position = 3x3 cell of the foreground centroid.
  The same judge is first run on freshly drawn (real) images; its accuracy there is reported as
  `judge_on_real_images`, and on the same images passed through the model's VAE as `judge_on_vae_round_trip` (the
  ceiling the diffusion model can reach).
Emoji (--emoji captions of training emoji): feature space = the image shrunk to 16x16 RGB (box filter), values in
  [0, 1], flattened; distance = Euclidean. The candidates are the 100 evaluated emoji's training images; a hit is the
  prompted emoji among the 5 nearest candidates of its generated image.
Speed: seconds per 64x64 image at 20 steps with guidance (batch 1, after a warm-up), at --threads torch threads;
by default the count the app uses for this model (engines/image.py: one thread below SMALL_DENOISER_PARAMS), and the
load average of the machine beside it (the cores are shared).

Usage: python scripts/eval_t2i.py --model assets/t2i-model
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import t2i_data

REPO = Path(__file__).resolve().parent.parent
PALETTE = np.array(list(t2i_data.COLOURS.values()), dtype=np.float32)
PALETTE_NAMES = list(t2i_data.COLOURS)
POS_NAMES = list(t2i_data.POSITIONS)


def judge_shape(img: np.ndarray) -> dict | None:
    """Colour, shape, size and position read from a generated image's pixels; None when nothing is drawn."""
    x = img.astype(np.float32)
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    bg = np.median(border, axis=0)
    diff = np.abs(x - bg).max(-1)
    if diff.max() <= 60:
        return None
    fg = diff > 0.5 * diff.max()  # the half-contrast outline: fair to soft edges
    core = diff > 0.75 * diff.max()
    ys, xs = np.nonzero(fg)
    colour = PALETTE_NAMES[int(np.argmin(((PALETTE - np.median(x[core], axis=0)) ** 2).sum(-1)))]
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = fg.sum() / (h * w)
    shape = "square" if fill >= 0.86 else "circle" if fill >= 0.63 else "triangle"
    size = "large" if max(h, w) >= 19 else "small"
    cy, cx = ys.mean() / img.shape[0], xs.mean() / img.shape[1]
    col, row = min(2, int(cx * 3)), min(2, int(cy * 3))
    return {"colour": colour, "shape": shape, "size": size, "position": POS_NAMES[row * 3 + col]}


def score(judged: list[dict | None], combos: list[tuple]) -> dict:
    keys = ("shape", "colour", "size", "position")
    hits = {k: 0 for k in keys}
    for j, combo in zip(judged, combos, strict=False):
        truth = dict(zip(("shape", "colour", "size", "position"), combo[:4], strict=False))
        for k in keys:
            hits[k] += bool(j) and j[k] == truth[k]
    return {f"{k}_pct": round(100 * hits[k] / len(combos), 1) for k in keys} | {
        "nothing_drawn": sum(j is None for j in judged)}


def features(images: np.ndarray) -> np.ndarray:
    """16x16 box-filtered RGB in [0, 1], flattened (see the module docstring)."""
    n, h, w, c = images.shape
    small = images.astype(np.float32).reshape(n, 16, h // 16, 16, w // 16, c).mean((2, 4)) / 255
    return small.reshape(n, -1)


def vae_round_trip(pipe, images: np.ndarray) -> np.ndarray:
    """Encode (posterior mean) and decode real images with the model's own VAE."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        rec = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mean).sample
    return ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def generate(pipe, prompts: list[str], seeds: list[int], args, batch: int = 10) -> np.ndarray:
    import torch

    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i:i + batch]]
        res = pipe(prompts[i:i + batch], num_inference_steps=args.steps, guidance_scale=args.guidance,
                   guidance_rescale=args.guidance_rescale, generator=gens, height=64, width=64, output_type="np")
        out.append((res.images * 255).round().astype(np.uint8))
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="evaluate the embedded text-to-image model")
    p.add_argument("--model", default=str(REPO / "assets" / "t2i-model"))
    p.add_argument("--shapes", type=int, default=100)
    p.add_argument("--emoji", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--guidance-rescale", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=None, help="default: what the app uses for this model")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--speed-images", type=int, default=5)
    args = p.parse_args(argv)
    import torch
    from diffusers import AutoPipelineForText2Image

    from engines.image import SMALL_DENOISER_PARAMS

    pipe = AutoPipelineForText2Image.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    if args.threads is None:
        small = sum(t.numel() for t in pipe.unet.parameters()) < SMALL_DENOISER_PARAMS
        args.threads = 1 if small else torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    result: dict = {"model": args.model, "steps": args.steps, "guidance": args.guidance,
                    "guidance_rescale": args.guidance_rescale}

    combos = rng.sample(t2i_data.shape_combos(), args.shapes)
    real = [t2i_data.draw_shape(*c, rng=random.Random(i)) for i, c in enumerate(combos)]
    result["judge_on_real_images"] = score([judge_shape(im) for im in real], combos)
    result["judge_on_vae_round_trip"] = score([judge_shape(im) for im in vae_round_trip(pipe, np.stack(real))], combos)
    start = time.perf_counter()
    gen = generate(pipe, [t2i_data.shape_caption(*c) for c in combos], list(range(args.shapes)), args)
    result["shapes"] = score([judge_shape(im) for im in gen], combos)
    result["shapes"]["seconds"] = round(time.perf_counter() - start, 1)

    chosen = t2i_data.choose_emoji(t2i_data.DEFAULT_EMOJI, 0)
    picked = sorted(rng.sample(range(len(chosen)), min(args.emoji, len(chosen))))
    truth = np.stack([t2i_data.render_emoji(chosen[i][0]) for i in picked])
    gen_e = generate(pipe, [t2i_data.emoji_caption(chosen[i][1]) for i in picked], [10_000 + i for i in picked], args)
    d = ((features(gen_e)[:, None] - features(truth)[None]) ** 2).sum(-1)
    ranks = (d < d[np.arange(len(picked)), np.arange(len(picked))][:, None]).sum(1)
    result["emoji"] = {"candidates": len(picked), "top1_pct": round(100 * float((ranks < 1).mean()), 1),
                       "top5_pct": round(100 * float((ranks < 5).mean()), 1)}

    times = []
    for i in range(args.speed_images + 1):
        t0 = time.perf_counter()
        pipe("a large blue square in the center on a white background", num_inference_steps=20, guidance_scale=4.0,
             generator=torch.Generator().manual_seed(i), height=64, width=64)
        times.append(time.perf_counter() - t0)
    result["speed"] = {"threads": args.threads, "s_per_image_20_steps": round(float(np.median(times[1:])), 3),
                       "load_average_1min": round(os.getloadavg()[0], 2)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
