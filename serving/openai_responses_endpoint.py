"""`/v1/responses`: OpenAI's Responses API over the same chat engine: text, JSON schema output (`text.format`)
and function tools, streamed as its typed events or returned whole. Stateless: `previous_response_id` and stored
responses are refused (nothing is kept), so a client sends the whole conversation in `input`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from engines import constraints
from engines.constraints import Constraint, InvalidConstraint
from engines.generation import StreamUpdate
from serving.openai_http import ApiDeps, caller, collect, error_response, sse_response, start_run
from serving.openai_schema import ApiError, SamplingFields, chat_messages, check_chars, generation_params, new_id, now
from serving.openai_structured import ToolPlan, parse_call, tool_plan, with_tools


class ResponsesBody(SamplingFields):
    input: str | list[Any]
    instructions: str | None = None
    max_output_tokens: int | None = None
    text: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    previous_response_id: str | None = None


def input_messages(body: ResponsesBody) -> list[dict]:
    """`instructions` and `input` (a string, or messages and function call items) as chat messages."""
    items = [{"role": "user", "content": body.input}] if isinstance(body.input, str) else list(body.input)
    messages = [{"role": "system", "content": body.instructions}] if body.instructions else []
    for i, item in enumerate(items):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message":
            content = item.get("content")
            if isinstance(content, list):  # input_text / output_text parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            messages.append({"role": item.get("role"), "content": content})
        elif kind == "function_call":
            call = {"function": {"name": item.get("name"), "arguments": item.get("arguments", "{}")}}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")})
        else:
            raise ApiError(400, f"input[{i}] must be a message, function_call or function_call_output item, got "
                                f"{kind!r}", param=f"input[{i}]")
    return chat_messages(messages)


def format_constraint(text: dict[str, Any] | None) -> Constraint | None:
    """`text.format`: text, json_object, or json_schema ({type, name, schema, strict}, flat as Responses has it)."""
    fmt = (text or {}).get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return constraints.any_json_object()
    if kind != "json_schema":
        raise ApiError(400, f"text.format.type must be text, json_object or json_schema, got {kind!r}",
                       param="text.format.type")
    try:
        return constraints.json_schema(fmt.get("schema"), "text.format.schema")
    except InvalidConstraint as exc:
        raise ApiError(400, str(exc), param=exc.param) from None


@dataclass
class ResponsesReply:
    """Builds the Response object and its stream events; a possible function call is held until it is whole."""

    body: ResponsesBody
    model: str
    plan: ToolPlan | None
    rid: str = field(default_factory=lambda: new_id("resp"))
    created: int = field(default_factory=now)
    item_id: str = field(default_factory=lambda: new_id("msg"))
    seq: int = 0
    held: str = ""

    @property
    def calls_tools(self) -> bool:
        return self.plan is not None and self.plan.mode != "none"

    def event(self, kind: str, **fields: Any) -> dict:
        self.seq += 1
        return {"type": f"response.{kind}", "sequence_number": self.seq - 1, **fields}

    def record(self, status: str, output: list[dict], stats: Any = None) -> dict:
        used = {"input_tokens": stats.prompt_tokens, "output_tokens": stats.generated_tokens,
                "total_tokens": stats.prompt_tokens + stats.generated_tokens} if stats else None
        if used:
            used |= {"input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
        return {"id": self.rid, "object": "response", "created_at": self.created, "model": self.model,
                "status": status, "output": output, "usage": used, "parallel_tool_calls": False,
                "tool_choice": self.body.tool_choice or "auto", "tools": self.body.tools or [],
                "text": self.body.text or {"format": {"type": "text"}}, "instructions": self.body.instructions,
                "temperature": self.body.temperature, "top_p": self.body.top_p, "error": None,
                "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None}

    def message(self, text: str, status: str = "completed") -> dict:
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status else []
        return {"type": "message", "id": self.item_id, "status": status or "in_progress", "role": "assistant",
                "content": content}

    def output(self, text: str) -> list[dict]:
        calls = parse_call(text, self.plan) if self.calls_tools else None
        if not calls:
            return [self.message(text)]
        fn = calls[0]["function"]
        return [{"type": "function_call", "id": new_id("fc"), "call_id": calls[0]["id"], "name": fn["name"],
                 "arguments": fn["arguments"], "status": "completed"}]

    def whole(self, updates: list[StreamUpdate], stats: Any, reason: str) -> dict:
        return self.record("incomplete" if reason == "length" else "completed",
                           self.output("".join(u.delta for u in updates)), stats)

    def head(self) -> list[dict]:
        events = [self.event("created", response=self.record("in_progress", [])),
                  self.event("in_progress", response=self.record("in_progress", []))]
        if not self.calls_tools:
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events += [self.event("output_item.added", output_index=0, item=self.message("", "")),
                       self.event("content_part.added", item_id=self.item_id, output_index=0, content_index=0,
                                  part=part)]
        return events

    def piece(self, update: StreamUpdate) -> dict | None:
        self.held += update.delta
        if self.calls_tools or not update.delta:
            return None
        return self.event("output_text.delta", item_id=self.item_id, output_index=0, content_index=0,
                          delta=update.delta, logprobs=[])

    def tail(self, stats: Any) -> list[dict]:
        status = "incomplete" if stats is not None and stats.finish_reason == "length" else "completed"
        item = self.output(self.held)[0]
        if not self.calls_tools:
            part = item["content"][0]
            events = [self.event("output_text.done", item_id=self.item_id, output_index=0, content_index=0,
                                 text=self.held, logprobs=[]),
                      self.event("content_part.done", item_id=self.item_id, output_index=0, content_index=0,
                                 part=part)]
        else:  # the whole call (or, auto, the text) arrives at the end: it is known only once it is complete
            events = [self.event("output_item.added", output_index=0, item=item)]
            if item["type"] == "function_call":
                events += [self.event("function_call_arguments.delta", item_id=item["id"], output_index=0,
                                      delta=item["arguments"]),
                           self.event("function_call_arguments.done", item_id=item["id"], output_index=0,
                                      arguments=item["arguments"])]
        events.append(self.event("output_item.done", output_index=0, item=item))
        kind = "completed" if status == "completed" else "incomplete"
        return [*events, self.event(kind, response=self.record(status, [item], stats))]


async def responses(body: ResponsesBody, request: Request, deps: ApiDeps):
    try:
        owner = caller(request, deps)
        if body.previous_response_id:
            raise ApiError(400, "this server keeps no responses: send the whole conversation in input instead of "
                                "previous_response_id", param="previous_response_id")
        plan = tool_plan(body.tools, body.tool_choice)
        constraint = format_constraint(body.text)
        if plan is not None and plan.constraint is not None and constraint is not None:
            raise ApiError(400, "send tools or text.format, not both", param="tools")
        messages = with_tools(input_messages(body), plan)
        check_chars(sum(len(m["content"]) for m in messages), deps.max_input_chars)
        params = generation_params(body, deps.max_new_tokens, body.max_output_tokens)
        model, stop = body.model or deps.catalog.default("chat"), threading.Event()
        constraint = constraint or (plan.constraint if plan else None)
        stream = deps.text.chat(model, messages, params, stop=stop, owner=owner,
                                **({"constraint": constraint} if constraint else {}))
        run, first = await start_run(stream, stop, deps)
    except Exception as exc:
        return error_response(exc)
    reply = ResponsesReply(body, model, plan)
    if body.stream:
        return sse_response(run, first, reply.head(), reply.piece, reply.tail, done=False)
    try:
        return reply.whole(*await collect(run, first))
    except Exception as exc:
        return error_response(exc)
