"""The /v1 endpoints that are not text streams: the model list, embeddings and images (`deps` is an ApiDeps)."""

from __future__ import annotations

import base64
import threading
from contextlib import nullcontext
from typing import Any

import numpy as np

from serving.limits import Deadline
from serving.openai_schema import ApiError, EmbeddingBody, ImageBody, check_chars, now


def served_models(deps: Any) -> list[tuple[str, str]]:
    """Catalog models (text first), then anything else loaded, then the embedding model."""
    names: dict[str, str] = {}
    for task in ("chat", "text-generation", "text-to-image"):
        for m in deps.catalog.choices(task):
            names.setdefault(m, m.split("/")[0] if "/" in m else "local")
    for row in getattr(deps.text, "cache", None).rows() if hasattr(deps.text, "cache") else []:
        names.setdefault(row.key.removeprefix("embeddings:"), "local")
    if deps.embedder is not None:
        names.setdefault(deps.embedder.name, deps.embedder.name.split("/")[0])
    return list(names.items())


def embed(body: EmbeddingBody, deps: Any) -> dict[str, Any]:
    if deps.embedder is None:
        raise ApiError(404, "this server has no embedding model", code="model_not_found", param="model")
    name = deps.embedder.name
    if body.model not in (None, "", name, name.split("/")[-1]):
        raise ApiError(404, f"model {body.model!r} is not served for embeddings; use {name!r}",
                       code="model_not_found", param="model")
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts or len(texts) > 512:
        raise ApiError(400, f"input must hold 1 to 512 texts, got {len(texts)}", param="input")
    if any(not t.strip() for t in texts):
        raise ApiError(400, "input holds an empty text; every text needs some content", param="input")
    check_chars(max(len(t) for t in texts), deps.max_input_chars)
    vectors = deps.embedder.encode(texts).astype(np.float32)
    if body.dimensions not in (None, vectors.shape[1]):
        raise ApiError(400, f"{name} gives {vectors.shape[1]} dimensions, got dimensions={body.dimensions}",
                       param="dimensions")
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.tobytes()).decode() if body.encoding_format == "base64" else v.tolist()}
            for i, v in enumerate(vectors)]
    words = sum(len(t.split()) for t in texts)
    return {"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": words, "total_tokens": words}}


def generate_images(body: ImageBody, deps: Any) -> dict[str, Any]:
    from engines.image import EMBEDDED_T2I
    from engines.image_meta import png_bytes
    from engines.image_params import parse_image_params

    if deps.image is None:
        raise ApiError(404, "this server has no text-to-image model", code="model_not_found", param="model")
    model = body.model or deps.catalog.default("text-to-image")
    size = body.size or ("64x64" if model == EMBEDDED_T2I else "512x512")
    width, sep, height = size.partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise ApiError(400, f"size must look like 512x512, got {size!r}", param="size")
    values = {k: v for k, v in {"steps": body.steps, "guidance_scale": body.guidance_scale,
                                "seed": body.seed}.items() if v is not None}
    params = parse_image_params(body.prompt, body.negative_prompt, width=int(width), height=int(height),
                                num_images=body.n, **values)
    stop = threading.Event()
    with Deadline(stop, deps.timeout_s), (deps.activity() if deps.activity is not None else nullcontext()):
        result = deps.image.generate(model, params, stop=stop)
    data = []
    for i, image in enumerate(result.images):
        png = png_bytes(image, result.metadata(i))
        b64 = base64.b64encode(png).decode()
        url = f"data:image/png;base64,{b64}"
        data.append({"b64_json": b64} if body.response_format == "b64_json" else {"url": url})
    return {"created": now(), "data": data}
