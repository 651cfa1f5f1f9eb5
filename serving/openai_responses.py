"""What the /v1 endpoints answer, declared for the OpenAPI document (clients, docs and the schemathesis fuzz test).

These models only describe: the handlers build plain dicts (faster, and streamed replies are text/event-stream), and
tests/hardening/test_api_fuzz.py checks that every response matches what is declared here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every refusal and failure, in OpenAI's shape (serving/openai_schema.ApiError.body)."""

    error: ErrorDetail


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class ChatMessageOut(BaseModel):
    role: Literal["assistant"]
    content: str | None  # None when the reply is a tool call
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: dict[str, Any] | None
    finish_reason: Literal["stop", "length", "tool_calls"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChunkChoice(BaseModel):
    index: int
    delta: dict[str, Any]
    logprobs: dict[str, Any] | None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class TextChoice(BaseModel):
    index: int
    text: str
    logprobs: dict[str, Any] | None
    finish_reason: Literal["stop", "length"] | None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class ResponseObject(BaseModel):
    """/v1/responses (serving/openai_responses_endpoint.py): output items are OpenAI's message and function_call."""

    id: str
    object: Literal["response"]
    created_at: int
    model: str
    status: Literal["completed", "incomplete", "in_progress"]
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None


class ResponseEvent(BaseModel):
    """One event of a streamed /v1/responses: response.created ... response.completed."""

    type: str
    sequence_number: int


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str  # a string when encoding_format is base64


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None


class ImageList(BaseModel):
    created: int
    data: list[ImageData]


ERROR_STATUSES = {
    400: "a parameter is missing, malformed or out of range (the message names it)",
    401: "the server needs an API key (--api-key) and none or a wrong one was sent",
    404: "the model (or the embedding or image model) is not served here",
    429: "the caller's rate limit is reached (Retry-After says when to try again)",
    500: "a fault in the server, logged under the id in the message",
    502: "the remote server behind a catalog model did not answer",
    503: "the server is busy (its queue is full) or a model is still loading",
}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its $defs put in place (a schema nested in a media type cannot point at $defs)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def place(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return place(defs[ref.removeprefix("#/$defs/")])
            return {k: place(v) for k, v in node.items()}
        return [place(v) for v in node] if isinstance(node, list) else node

    return place(schema)


def event_stream(chunk: type[BaseModel]) -> dict[str, Any]:
    """With stream=true: server-sent events whose data is a `chunk` (or an error met mid-stream), then [DONE].

    Each event is described as OpenAPI 3.2 reads a text/event-stream (an object with its `data` string)."""
    json_data = {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"anyOf": [inline_schema(chunk), inline_schema(ErrorBody)]}}
    event = {"type": "object", "required": ["data"],
             "properties": {"data": {"anyOf": [{"const": "[DONE]"}, json_data]}}}
    return {"text/event-stream": {"schema": event}}


def responses(model: type[BaseModel], chunk: type[BaseModel] | None = None) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a /v1 route: its success body (and event stream) plus every error status, documented."""
    ok: dict[str, Any] = {"model": model, "description": "success"}
    if chunk is not None:
        ok["content"] = event_stream(chunk)
    return {200: ok, **{status: {"model": ErrorBody, "description": why} for status, why in ERROR_STATUSES.items()}}
