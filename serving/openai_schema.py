"""Request bodies of the OpenAI-compatible API, and turning them into the app's own validated parameters.

Unknown fields are accepted and ignored (clients send many); fields this server cannot honour (n > 1, images in
messages) are refused with a message naming them.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from engines.image_params import IMAGE_LIMITS
from engines.params import GenerationParams, parse_params
from errors import InvalidInput

MAX_STOP = 4


class ApiError(Exception):
    """An error for the client, in OpenAI's shape: status, message, type, the parameter at fault."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class SamplingFields(_Body):
    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = 1
    user: str | None = None
    # not in OpenAI's API, accepted as vLLM and TGI do
    top_k: int | None = None
    repetition_penalty: float | None = None


# What a message should look like, for the OpenAPI document; the server reads any list of objects and refuses a bad
# message itself (chat_messages), naming its index and field.
MESSAGES_SCHEMA = {"type": "array", "minItems": 1, "items": {
    "type": "object", "required": ["role", "content"], "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {
            "type": "object", "required": ["type", "text"],
            "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}}]}}}}


class ChatBody(SamplingFields):
    messages: Annotated[list[dict[str, Any]], WithJsonSchema(MESSAGES_SCHEMA)]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None


class CompletionBody(SamplingFields):
    prompt: str | list[str]
    logprobs: int | None = None
    echo: bool = False
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


TEXTS_SCHEMA = {"anyOf": [{"type": "string", "pattern": r"\S"}, {"type": "array", "minItems": 1, "maxItems": 512,
                                                                "items": {"type": "string", "pattern": r"\S"}}]}


def documented_range(name: str) -> Any:
    """A field whose OpenAPI schema states the server's range for `name`; the server checks it itself
    (parse_image_params), so a value out of range gets the app's message rather than pydantic's."""
    low, high, _ = IMAGE_LIMITS[name]
    return Field(default=None, json_schema_extra={"minimum": low, "maximum": high})


class EmbeddingBody(_Body):
    input: Annotated[str | list[str], WithJsonSchema(TEXTS_SCHEMA)]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


class ImageBody(_Body):
    prompt: str = Field(json_schema_extra={"pattern": r"\S"})
    model: str | None = None
    n: int = Field(default=1, json_schema_extra={"minimum": 1, "maximum": IMAGE_LIMITS["num_images"][1]})
    size: str | None = Field(default=None, json_schema_extra={"pattern": "^[0-9]+x[0-9]+$"})
    response_format: Literal["b64_json", "url"] = "b64_json"
    # extras (the Text to image tab's settings)
    negative_prompt: str = ""
    steps: int | None = documented_range("steps")
    guidance_scale: float | None = documented_range("guidance_scale")
    seed: int | None = documented_range("seed")


def generation_params(body: SamplingFields, max_new_tokens_limit: int, max_tokens: int | None) -> GenerationParams:
    """The app's parameters from an OpenAI body; missing fields keep the app's defaults."""
    if body.n != 1:
        raise ApiError(400, f"n must be 1 on this server (one completion per request), got {body.n}", param="n")
    values = {"temperature": body.temperature, "top_p": body.top_p, "max_new_tokens": max_tokens, "seed": body.seed,
              "top_k": body.top_k, "repetition_penalty": body.repetition_penalty}
    try:
        return parse_params(max_new_tokens_limit, **{k: v for k, v in values.items() if v is not None})
    except InvalidInput as exc:
        raise ApiError(400, str(exc).replace("max_new_tokens", "max_tokens")) from None


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOP or any(len(s) > 100 for s in stops):
        raise ApiError(400, f"stop takes at most {MAX_STOP} strings of at most 100 characters each", param="stop")
    return tuple(s for s in stops if s)


def chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Role/content pairs with text content; 'developer' counts as 'system'."""
    if not messages:
        raise ApiError(400, "messages is empty: send at least one user message", param="messages")
    out = []
    for i, m in enumerate(messages):
        m = _tool_turn(m)
        role = m.get("role")
        role = "system" if role == "developer" else role
        if not isinstance(role, str) or role not in ("system", "user", "assistant"):
            raise ApiError(400, f"messages[{i}].role must be system, developer, user, assistant or tool; got "
                                f"{m.get('role')!r}", param=f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):
            if any(not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text", ""), str)
                   for p in content):
                raise ApiError(400, f"messages[{i}].content may only hold text parts "
                                    '({"type": "text", "text": "..."}) on this server', param=f"messages[{i}].content")
            content = "".join(p.get("text", "") for p in content)
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content must be a string or text parts, got {type(content).__name__}",
                           param=f"messages[{i}].content")
        out.append({"role": role, "content": content})
    if out[-1]["role"] == "assistant":
        raise ApiError(400, "the last message must not be the assistant's: there is nothing to answer",
                       param="messages")
    return out


def _tool_turn(m: dict[str, Any]) -> dict[str, Any]:
    """Tool turns as text the model's template takes: an assistant's call as the JSON it generated (see
    serving/openai_structured.py), a tool's result as a user turn that says what it is."""
    if m.get("role") == "tool":
        content = m.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        return {"role": "user", "content": f"Function result ({m.get('tool_call_id', 'call')}): {text}"}
    calls = m.get("tool_calls") if m.get("role") == "assistant" else None
    first = calls[0] if isinstance(calls, list) and calls and isinstance(calls[0], dict) else None
    if first is not None and isinstance(first.get("function"), dict) and not m.get("content"):
        fn = first["function"]
        try:
            arguments = json.loads(fn.get("arguments") or "{}")
        except (TypeError, json.JSONDecodeError):
            arguments = fn.get("arguments")
        return {"role": "assistant", "content": json.dumps({"name": fn.get("name"), "arguments": arguments})}
    return m


def single_prompt(prompt: str | list[str]) -> str:
    if isinstance(prompt, str):
        return prompt
    if len(prompt) != 1:
        raise ApiError(400, f"prompt must be one string on this server (one completion per request), got a list of "
                            f"{len(prompt)}", param="prompt")
    return prompt[0]


def check_chars(n: int, limit: int) -> None:
    if n > limit:
        raise ApiError(400, f"the input is {n} characters; this server accepts at most {limit}",
                       code="context_length_exceeded")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def finish_reason(reason: str) -> str:
    """The app's finish reasons in OpenAI's words."""
    return "length" if reason == "length" else "stop"


def usage(stats) -> dict[str, int]:
    if stats is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.generated_tokens,
            "total_tokens": stats.prompt_tokens + stats.generated_tokens}
