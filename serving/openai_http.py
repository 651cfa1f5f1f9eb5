"""The HTTP side of the OpenAI-compatible API: who is calling, errors in OpenAI's shape, and a generation driven
from async code (streamed as server-sent events or collected)."""


import hmac
import json
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from engines.batching import QueueFull
from engines.catalog import Catalog
from engines.generation import StreamUpdate
from engines.remote import RemoteUnavailable
from engines.resolve import ModelNotFound
from engines.text import InputTooLong
from errors import UserError, internal_message, log_internal
from identity import api_caller
from serving.limits import Deadline, RateLimited, RateLimiter
from serving.openai_schema import (
    ApiError,
    finish_reason,
)

logger = logging.getLogger(__name__)


@dataclass
class ApiDeps:
    text: Any  # TextEngine (or anything with chat/complete streams)
    catalog: Catalog
    image: Any = None  # ImageEngine
    embedder: Any = None  # store Embedder
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
        who = api_caller(token, None)
    elif deps.keys_required:
        raise ApiError(401, "this server requires login (--auth), so its API needs a key: start it with --api-key",
                       "authentication_error", code="invalid_api_key")
    else:
        who = api_caller("", request.client.host if request.client else None)
    if count and deps.limiter is not None:
        try:
            deps.limiter.admit(who)
        except RateLimited as exc:
            raise ApiError(429, str(exc), "rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(math.ceil(exc.retry_after_s))}) from None
    return who


def as_api_error(exc: BaseException) -> ApiError:
    """The app's exceptions as HTTP errors (errors.py's policy): refusals keep their message and status; anything
    else is logged with a traceback under an id and answered 500 without blaming the request."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ModelNotFound):
        return ApiError(404, str(exc), code="model_not_found", param="model")
    if isinstance(exc, QueueFull):  # the server is busy, not the client over its own limit
        return ApiError(503, str(exc), "server_busy", code="queue_full")
    if isinstance(exc, RemoteUnavailable):
        return ApiError(502, str(exc), "server_error", code="upstream_unavailable")
    if isinstance(exc, UserError):
        code = "context_length_exceeded" if isinstance(exc, InputTooLong) else None
        return ApiError(exc.status, str(exc), exc.code, code=code)
    return ApiError(500, internal_message(log_internal(exc, "an API request")), "server_error")


def error_response(exc: BaseException) -> JSONResponse:
    err = as_api_error(exc)
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def body_error(errors: list[dict[str, Any]]) -> ApiError:
    """A body FastAPI could not read into the request model, as one 400 naming the fields at fault."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError(400, "the request body is not valid JSON: send one JSON object", param="body")
    where = [".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in errors]
    detail = "; ".join(f"{w}: {e.get('msg', 'invalid')}" for w, e in zip(where[:3], errors[:3], strict=True))
    return ApiError(400, f"the request body does not fit this endpoint ({detail})", param=where[0] if where else None)


class OpenAIRoute(APIRoute):
    """A /v1 route that refuses a body it cannot read (not JSON, not UTF-8, wrong types) with a 400 in OpenAI's
    error shape, as OpenAI does, instead of FastAPI's 422 `{"detail": ...}` that OpenAI clients cannot read."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return error_response(body_error(list(exc.errors())))
            except HTTPException as exc:  # FastAPI's "There was an error parsing the body"
                return error_response(ApiError(exc.status_code, f"the request body could not be read: {exc.detail}",
                                               param="body"))

        return route


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


def sse_response(run: TextRun, first: StreamUpdate | None, head: list[dict], piece, tail,
                 done: bool = True) -> StreamingResponse:
    """Server-sent events: `head`, then `piece(update)` for each update that gives one, then `tail(stats)`, then
    `[DONE]` (which the Responses API does not send: `done=False`).

    A failure mid-stream arrives as an error event: the status line has been sent already.
    """
    async def events() -> AsyncIterator[str]:
        stats = None
        for data in head:
            yield sse(data)
        try:
            async for update in run.updates(first):
                stats = update.stats or stats
                data = piece(update)
                if data is not None:
                    yield sse(data)
        except Exception as exc:
            yield sse(as_api_error(exc).body())
            return
        for data in tail(stats):
            yield sse(data)
        if done:
            yield sse("[DONE]")
    return StreamingResponse(events(), media_type="text/event-stream")


async def collect(run: TextRun, first: StreamUpdate | None) -> tuple[list[StreamUpdate], Any, str]:
    """Every update of a run, its stats, and the finish reason in OpenAI's words."""
    updates = [u async for u in run.updates(first)]
    stats = next((u.stats for u in updates if u.stats), None)
    return updates, stats, finish_reason(stats.finish_reason if stats else "stop")


def token_logprobs(update: StreamUpdate) -> list[dict[str, Any]]:
    return [{"token": piece, "logprob": math.log(max(p, 1e-45)) if p is not None else None,
             "bytes": list(piece.encode()), "top_logprobs": []} for piece, p in update.tokens]
