"""The OpenAI-compatible API (/v1/...), served beside the Gradio app by the same engines, cache and batches.

Errors come back in OpenAI's shape, so the official clients raise their usual exceptions. A model that cannot be
found or loaded, or a request over a limit, is refused before the response starts; a failure mid-stream arrives as
an error event. A client that goes away stops its generation (its place in the batch is freed at the next token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from models.batching import QueueFull
from models.catalog import Catalog
from models.generation import GenerationError, StreamUpdate
from models.remote import RemoteUnavailable
from models.resolve import ModelNotFound
from serving.limits import Deadline, RateLimited, RateLimiter
from serving.openai_schema import (ApiError, ChatBody, CompletionBody, EmbeddingBody, ImageBody, chat_messages,
                                   finish_reason, generation_params, new_id, now, stop_strings, usage)

logger = logging.getLogger(__name__)


@dataclass
class ApiDeps:
    text: Any  # TextEngine (or anything with chat/complete streams)
    catalog: Catalog
    image: Any = None  # ImageEngine
    embedder: Any = None  # playground_index Embedder
    limiter: RateLimiter | None = None
    keys: tuple[str, ...] = ()
    keys_required: bool = False  # --auth without --api-key: the API is closed
    max_new_tokens: int = 2048
    max_input_chars: int = 32_000
    timeout_s: float | None = None
    activity: Callable[[], AbstractContextManager] | None = None  # tells background work a generation runs


def caller(request: Request, deps: ApiDeps, count: bool = True) -> str:
    """Who is calling (for rate limits): a key's fingerprint, else the client address. Raises ApiError 401/429."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if deps.keys:
        if not any(hmac.compare_digest(token.encode(), k.encode()) for k in deps.keys):
            raise ApiError(401, "invalid or missing API key: send the header 'Authorization: Bearer <key>'",
                           "authentication_error", code="invalid_api_key")
        who = "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    elif deps.keys_required:
        raise ApiError(401, "this server requires login (--auth), so its API needs a key: start it with --api-key",
                       "authentication_error", code="invalid_api_key")
    else:
        who = "ip:" + (request.client.host if request.client else "unknown")
    if count and deps.limiter is not None:
        try:
            deps.limiter.admit(who)
        except RateLimited as exc:
            raise ApiError(429, str(exc), "rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(math.ceil(exc.retry_after_s))}) from None
    return who


def as_api_error(exc: BaseException) -> ApiError:
    """The app's exceptions as HTTP errors with the app's own message."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ModelNotFound):
        return ApiError(404, str(exc), code="model_not_found", param="model")
    if isinstance(exc, QueueFull):
        return ApiError(503, str(exc), "server_busy", code="queue_full")
    if isinstance(exc, RemoteUnavailable):
        return ApiError(502, str(exc), "server_error", code="upstream_unavailable")
    if isinstance(exc, GenerationError):
        return ApiError(500, str(exc), "server_error")
    if isinstance(exc, (ValueError, LookupError, RuntimeError)):  # InputTooLong, ModelLoadError, bad settings
        code = "context_length_exceeded" if type(exc).__name__ == "InputTooLong" else None
        return ApiError(400, str(exc), code=code)
    logger.error("API request failed", exc_info=exc)
    return ApiError(500, f"internal error ({type(exc).__name__}); the server log has the details", "server_error")


def error_response(exc: BaseException) -> JSONResponse:
    err = as_api_error(exc)
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


class TextRun:
    """One generation driven from async code: each step runs in a worker thread; closing it stops the model."""

    def __init__(self, stream: Iterator[StreamUpdate], stop: threading.Event, deps: ApiDeps):
        self.stream, self.stop = stream, stop
        self.deadline = Deadline(stop, deps.timeout_s).__enter__()
        self.activity = deps.activity() if deps.activity is not None else nullcontext()
        self.activity.__enter__()
        self.closed = False

    async def next(self) -> StreamUpdate | None:
        return await run_in_threadpool(next, self.stream, None)

    async def updates(self, first: StreamUpdate | None) -> AsyncIterator[StreamUpdate]:
        update = first
        try:
            while update is not None:
                yield update
                update = await self.next()
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop.set()  # the batch drops this request at its next step, so the worker thread returns at once
        self.deadline.__exit__()
        self.activity.__exit__(None, None, None)


async def start_run(stream: Iterator[StreamUpdate], stop: threading.Event, deps: ApiDeps) -> tuple[TextRun, Any]:
    """Start a generation and wait for its first update, so a load failure is still an HTTP error."""
    run = TextRun(stream, stop, deps)
    try:
        return run, await run.next()
    except BaseException:
        run.close()
        raise


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def token_logprobs(update: StreamUpdate) -> list[dict[str, Any]]:
    return [{"token": piece, "logprob": math.log(max(p, 1e-45)) if p is not None else None,
             "bytes": list(piece.encode()), "top_logprobs": []} for piece, p in update.tokens]


def build_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/models")
    async def list_models(request: Request):
        try:
            caller(request, deps, count=False)
        except ApiError as exc:
            return error_response(exc)
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": owner}
                                           for m, owner in served_models(deps)]}

    @router.post("/chat/completions")
    async def chat_completions(body: ChatBody, request: Request):
        try:
            caller(request, deps)
            messages = chat_messages(body.messages)
            check_chars(sum(len(m["content"]) for m in messages), deps)
            params = generation_params(body, deps.max_new_tokens, body.max_completion_tokens or body.max_tokens)
            model, stop = body.model or deps.catalog.default("chat"), threading.Event()
            stream = deps.text.chat(model, messages, params, stop=stop, with_probs=body.logprobs,
                                    stop_strings=stop_strings(body.stop))
            run, first = await start_run(stream, stop, deps)
        except Exception as exc:
            return error_response(exc)
        rid, created = new_id("chatcmpl"), now()
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunk(delta: dict, reason: str | None = None, logprobs: Any = None) -> dict:
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
            return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [choice]}

        if body.stream:
            async def events() -> AsyncIterator[str]:
                stats = None
                yield sse(chunk({"role": "assistant", "content": ""}))
                try:
                    async for update in run.updates(first):
                        stats = update.stats or stats
                        if update.delta or (body.logprobs and update.tokens):
                            lp = {"content": token_logprobs(update)} if body.logprobs else None
                            yield sse(chunk({"content": update.delta}, logprobs=lp))
                except Exception as exc:  # mid-stream: the status is sent already, so the error is an event
                    yield sse(as_api_error(exc).body())
                    return
                yield sse(chunk({}, finish_reason(stats.finish_reason if stats else "stop")))
                if include_usage:
                    yield sse({"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [], "usage": usage(stats)})
                yield sse("[DONE]")
            return StreamingResponse(events(), media_type="text/event-stream")
        try:
            updates = [u async for u in run.updates(first)]
        except Exception as exc:
            return error_response(exc)
        stats = next((u.stats for u in updates if u.stats), None)
        logprobs = {"content": [t for u in updates for t in token_logprobs(u)]} if body.logprobs else None
        message = {"role": "assistant", "content": "".join(u.delta for u in updates)}
        return {"id": rid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                             "finish_reason": finish_reason(stats.finish_reason if stats else "stop")}],
                "usage": usage(stats)}

    @router.post("/completions")
    async def completions(body: CompletionBody, request: Request):
        try:
            caller(request, deps)
            prompt = body.prompt if isinstance(body.prompt, str) else _single(body.prompt)
            check_chars(len(prompt), deps)
            params = generation_params(body, deps.max_new_tokens, body.max_tokens)
            model, stop = body.model or deps.catalog.default("text-generation"), threading.Event()
            stream = deps.text.complete(model, prompt, params, stop_strings=stop_strings(body.stop), stop=stop,
                                        with_probs=body.logprobs is not None)
            run, first = await start_run(stream, stop, deps)
        except Exception as exc:
            return error_response(exc)
        rid, created = new_id("cmpl"), now()

        def choice(text: str, updates: list[StreamUpdate], reason: str | None) -> dict:
            lp = None
            if body.logprobs is not None:
                pieces = [t for u in updates for t in token_logprobs(u)]
                lp = {"tokens": [p["token"] for p in pieces], "token_logprobs": [p["logprob"] for p in pieces],
                      "top_logprobs": None, "text_offset": None}
            return {"index": 0, "text": text, "logprobs": lp, "finish_reason": reason}

        if body.stream:
            async def events() -> AsyncIterator[str]:
                stats = None
                if body.echo:
                    yield sse({"id": rid, "object": "text_completion", "created": created, "model": model,
                               "choices": [choice(prompt, [], None)]})
                try:
                    async for update in run.updates(first):
                        stats = update.stats or stats
                        if update.delta or (body.logprobs is not None and update.tokens):
                            yield sse({"id": rid, "object": "text_completion", "created": created, "model": model,
                                       "choices": [choice(update.delta, [update], None)]})
                except Exception as exc:
                    yield sse(as_api_error(exc).body())
                    return
                reason = finish_reason(stats.finish_reason if stats else "stop")
                yield sse({"id": rid, "object": "text_completion", "created": created, "model": model,
                           "choices": [choice("", [], reason)], "usage": usage(stats)})
                yield sse("[DONE]")
            return StreamingResponse(events(), media_type="text/event-stream")
        try:
            updates = [u async for u in run.updates(first)]
        except Exception as exc:
            return error_response(exc)
        stats = next((u.stats for u in updates if u.stats), None)
        text = (prompt if body.echo else "") + "".join(u.delta for u in updates)
        return {"id": rid, "object": "text_completion", "created": created, "model": model,
                "choices": [choice(text, updates, finish_reason(stats.finish_reason if stats else "stop"))],
                "usage": usage(stats)}

    @router.post("/embeddings")
    async def embeddings(body: EmbeddingBody, request: Request):
        try:
            caller(request, deps)
            return await run_in_threadpool(embed, body, deps)
        except Exception as exc:
            return error_response(exc)

    @router.post("/images/generations")
    async def images(body: ImageBody, request: Request):
        try:
            caller(request, deps)
            return await run_in_threadpool(generate_images, body, deps)
        except Exception as exc:
            return error_response(exc)

    return router


def _single(prompts: list[str]) -> str:
    if len(prompts) != 1:
        raise ApiError(400, f"prompt must be one string on this server (one completion per request), got a list of "
                            f"{len(prompts)}", param="prompt")
    return prompts[0]


def check_chars(n: int, deps: ApiDeps) -> None:
    if n > deps.max_input_chars:
        raise ApiError(400, f"the input is {n} characters; this server accepts at most {deps.max_input_chars}",
                       code="context_length_exceeded")


def served_models(deps: ApiDeps) -> list[tuple[str, str]]:
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


def embed(body: EmbeddingBody, deps: ApiDeps) -> dict[str, Any]:
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
    check_chars(max(len(t) for t in texts), deps)
    vectors = deps.embedder.encode(texts).astype(np.float32)
    if body.dimensions not in (None, vectors.shape[1]):
        raise ApiError(400, f"{name} gives {vectors.shape[1]} dimensions, got dimensions={body.dimensions}",
                       param="dimensions")
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.tobytes()).decode() if body.encoding_format == "base64" else v.tolist()}
            for i, v in enumerate(vectors)]
    words = sum(len(t.split()) for t in texts)
    return {"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": words, "total_tokens": words}}


def generate_images(body: ImageBody, deps: ApiDeps) -> dict[str, Any]:
    from models.image import EMBEDDED_T2I
    from models.image_meta import png_bytes
    from models.image_params import parse_image_params

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
