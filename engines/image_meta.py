"""Generation parameters stored in PNG text chunks, and read back from a dropped image.

Two chunks are written: `hf_playground` (JSON, exact round trip) and `parameters` in the widespread
AUTOMATIC1111 layout, so other tools show the prompt too. Reading prefers the JSON and falls back to `parameters`.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

JSON_KEY = "hf_playground"
A1111_KEY = "parameters"
RESTORED = ("prompt", "negative_prompt", "steps", "guidance_scale", "seed", "width", "height", "scheduler",
            "guidance_rescale", "model")


def a1111_text(meta: dict[str, Any]) -> str:
    """The 'parameters' text: prompt, negative prompt, then one line of settings."""
    lines = [meta.get("prompt", "")]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {meta['negative_prompt']}")
    lines.append(f"Steps: {meta.get('steps')}, Sampler: {meta.get('scheduler')}, "
                 f"CFG scale: {meta.get('guidance_scale')}, Seed: {meta.get('seed')}, "
                 f"Size: {meta.get('width')}x{meta.get('height')}, Model: {meta.get('model')}")
    return "\n".join(lines)


def save_png(image: Image.Image, meta: dict[str, Any], path: str | Path) -> Path:
    """Write `image` as PNG with `meta` in its text chunks.

    Args:
        image: the generated image.
        meta: JSON-serialisable generation parameters (prompt, seed, steps, ...).
        path: destination file.
    Returns:
        The path written.
    """
    path = Path(path)
    path.write_bytes(png_bytes(image, meta))
    return path


def png_bytes(image: Image.Image, meta: dict[str, Any]) -> bytes:
    """The PNG file `save_png` would write, as bytes (for the HTTP API)."""
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    # ASCII JSON keeps any text exactly, even a lone surrogate that a JSON request can carry and UTF-8 cannot encode;
    # the readable copy for other tools replaces such characters instead
    info.add_text(JSON_KEY, json.dumps(meta, ensure_ascii=True))
    info.add_text(A1111_KEY, a1111_text(meta).encode("utf-8", "replace").decode("utf-8"))
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def parse_a1111(text: str) -> dict[str, Any]:
    """Best-effort reading of an AUTOMATIC1111 'parameters' text."""
    lines = text.strip().split("\n")
    settings = lines.pop() if lines and re.match(r"^Steps: ", lines[-1]) else ""
    meta: dict[str, Any] = {}
    negative = [i for i, line in enumerate(lines) if line.startswith("Negative prompt: ")]
    if negative:
        meta["negative_prompt"] = "\n".join(lines[negative[0]:])[len("Negative prompt: "):]
        lines = lines[:negative[0]]
    meta["prompt"] = "\n".join(lines)
    fields = dict(re.findall(r"\s*([\w ]+): ([^,]+)", settings))
    conv = {"Steps": ("steps", int), "CFG scale": ("guidance_scale", float), "Seed": ("seed", int),
            "Sampler": ("scheduler", str), "Model": ("model", str)}
    for key, (name, kind) in conv.items():
        if key in fields:
            try:
                meta[name] = kind(fields[key].strip())
            except ValueError:
                pass
    size = re.match(r"(\d+)x(\d+)", fields.get("Size", ""))
    if size:
        meta["width"], meta["height"] = int(size.group(1)), int(size.group(2))
    return meta


def read_png_meta(source: str | Path | Image.Image) -> dict[str, Any] | None:
    """The generation parameters stored in a PNG, or None when it carries none.

    Args:
        source: a file path or an opened image.
    Returns:
        A dict with the keys in RESTORED that were found.
    """
    image = source if isinstance(source, Image.Image) else Image.open(source)
    text = getattr(image, "text", None) or image.info
    if JSON_KEY in text:
        try:
            meta = json.loads(text[JSON_KEY])
        except json.JSONDecodeError:
            meta = None
        if isinstance(meta, dict):
            return {k: meta[k] for k in RESTORED if k in meta}
    if A1111_KEY in text:
        return parse_a1111(str(text[A1111_KEY]))
    return None
