"""The OpenAI-compatible API (/v1/...), served beside the Gradio app by the same engines, cache and batches.

Errors come back in OpenAI's shape, so the official clients raise their usual exceptions (serving/openai_http.py).
A client that goes away stops its generation (its place in the batch is freed at the next token).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from serving.openai_http import ApiDeps, ApiError, caller, error_response
from serving.openai_media import embed, generate_images, served_models
from serving.openai_schema import ChatBody, CompletionBody, EmbeddingBody, ImageBody
from serving.openai_text import chat_completions, completions

__all__ = ["ApiDeps", "build_router"]


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
    async def chat(body: ChatBody, request: Request):
        return await chat_completions(body, request, deps)

    @router.post("/completions")
    async def complete(body: CompletionBody, request: Request):
        return await completions(body, request, deps)

    async def in_thread(request: Request, work, body):
        """A blocking endpoint: check the caller, run `work(body, deps)` in a worker thread, map its errors."""
        try:
            caller(request, deps)
            return await run_in_threadpool(work, body, deps)
        except Exception as exc:
            return error_response(exc)

    @router.post("/embeddings")
    async def embeddings(body: EmbeddingBody, request: Request):
        return await in_thread(request, embed, body)

    @router.post("/images/generations")
    async def images(body: ImageBody, request: Request):
        return await in_thread(request, generate_images, body)

    return router
