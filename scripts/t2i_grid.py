"""Draw a grid of real outputs of the embedded text-to-image model with their prompts (for the README).

Usage: python scripts/t2i_grid.py --out assets/t2i-grid.png
Each cell: the 64x64 image enlarged 3x (nearest neighbour, so pixels stay visible) over its prompt; seeds 0, 1, ...
"""

from __future__ import annotations

import argparse
import logging
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parent.parent
PROMPTS = [
    "a large red circle in the center on a white background",
    "a small blue square at the top left on a white background",
    "a large green triangle at the bottom on a white background",
    "a large yellow circle on the right on a black background",
    "a small purple triangle at the bottom right on a gray background",
    "a large orange square at the top on a white background",
    "a large black circle on the left on a white background",
    "a small red triangle in the center on a black background",
    "rainbow emoji",
    "taco emoji",
    "hamburger emoji",
    "banana emoji",
    "crescent moon emoji",
    "trophy emoji",
    "birthday cake emoji",
    "artist palette emoji",
]
SCALE, COLUMNS, CAPTION_H = 3, 4, 46


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "assets" / "t2i-model"))
    p.add_argument("--out", default=str(REPO / "assets" / "t2i-grid.png"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch
    from diffusers import AutoPipelineForText2Image

    torch.set_num_threads(args.threads)
    pipe = AutoPipelineForText2Image.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(PROMPTS, num_inference_steps=args.steps, guidance_scale=args.guidance, guidance_rescale=0.7,
                  height=64, width=64, generator=[torch.Generator().manual_seed(i) for i in range(len(PROMPTS))]).images
    cell_w, cell_h = 64 * SCALE + 8, 64 * SCALE + CAPTION_H
    rows = (len(PROMPTS) + COLUMNS - 1) // COLUMNS
    grid = Image.new("RGB", (cell_w * COLUMNS, cell_h * rows), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=11)
    for i, (prompt, image) in enumerate(zip(PROMPTS, images, strict=False)):
        x, y = (i % COLUMNS) * cell_w + 4, (i // COLUMNS) * cell_h + 4
        grid.paste(image.resize((64 * SCALE, 64 * SCALE), Image.NEAREST), (x, y))
        draw.multiline_text((x, y + 64 * SCALE + 2), "\n".join(textwrap.wrap(prompt, 32)), fill="black", font=font)
    grid.save(args.out, optimize=True)
    logging.getLogger(__name__).info("wrote %s (%dx%d)", args.out, *grid.size)


if __name__ == "__main__":
    main()
