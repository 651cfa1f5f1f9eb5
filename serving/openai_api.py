"""The OpenAI-compatible API (/v1/...), served beside the Gradio app by the same engines, cache and batches.

Errors come back in OpenAI's shape, so the official clients raise their usual exceptions (serving/openai_http.py).
A client that goes away stops its generation (its place in the batch is freed at the next token).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from serving.openai_http import ApiDeps, ApiError, OpenAIRoute, caller, error_response
from serving.openai_media import embed, generate_images, served_models
from serving.openai_responses import (
    ChatCompletion,
    ChatCompletionChunk,
    EmbeddingList,
    ImageList,
    ModelList,
    ResponseEvent,
    ResponseObject,
    TextCompletion,
    responses,
)
from serving.openai_responses_endpoint import ResponsesBody
from serving.openai_responses_endpoint import responses as responses_endpoint
from serving.openai_schema import ChatBody, CompletionBody, EmbeddingBody, ImageBody
from serving.openai_text import chat_completions, completions

__all__ = ["ApiDeps", "build_router", "openapi_schema"]


def build_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=OpenAIRoute)

    @router.get("/models", responses=responses(ModelList))
    async def list_models(request: Request):
        try:
            caller(request, deps, count=False)
        except ApiError as exc:
            return error_response(exc)
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": owner}
                                           for m, owner in served_models(deps)]}

    @router.post("/chat/completions", responses=responses(ChatCompletion, ChatCompletionChunk))
    async def chat(body: ChatBody, request: Request):
        return await chat_completions(body, request, deps)

    @router.post("/responses", responses=responses(ResponseObject, ResponseEvent))
    async def respond(body: ResponsesBody, request: Request):
        return await responses_endpoint(body, request, deps)

    @router.post("/completions", responses=responses(TextCompletion, TextCompletion))
    async def complete(body: CompletionBody, request: Request):
        return await completions(body, request, deps)

    async def in_thread(request: Request, work, body):
        """A blocking endpoint: check the caller, run `work(body, deps)` in a worker thread, map its errors."""
        try:
            caller(request, deps)
            return await run_in_threadpool(work, body, deps)
        except Exception as exc:
            return error_response(exc)

    @router.post("/embeddings", responses=responses(EmbeddingList))
    async def embeddings(body: EmbeddingBody, request: Request):
        return await in_thread(request, embed, body)

    @router.post("/images/generations", responses=responses(ImageList))
    async def images(body: ImageBody, request: Request):
        return await in_thread(request, generate_images, body)

    return router


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI document of the /v1 routes alone (gradio's own routes left out), for clients and fuzzers."""
    from engines.catalog import shipped_catalog

    app = FastAPI(title="Hugging Face models playground: OpenAI-compatible API", version="1")
    app.include_router(build_router(ApiDeps(text=None, catalog=shipped_catalog())))  # routes only: nothing runs
    schema = app.openapi()
    for path in schema["paths"].values():  # a body that does not fit is a 400 here (OpenAIRoute), never a 422
        for operation in path.values():
            operation["responses"].pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema
