"""`/v1/chat/completions` and `/v1/completions`: the app's text engines in OpenAI's request and response shapes.

A model that cannot be found or loaded, or a request over a limit, is refused before the response starts; a failure
mid-stream arrives as an error event.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from engines.generation import StreamUpdate
from serving.openai_http import ApiDeps, caller, collect, error_response, sse_response, start_run, token_logprobs
from serving.openai_schema import (
    ApiError,
    ChatBody,
    CompletionBody,
    chat_messages,
    check_chars,
    finish_reason,
    generation_params,
    new_id,
    now,
    single_prompt,
    stop_strings,
    usage,
)
from serving.openai_structured import ToolPlan, parse_call, request_constraint, tool_plan, with_tools


@dataclass
class ChatReply:
    """Builds the chunks and the final object of one chat completion."""

    rid: str
    created: int
    model: str
    logprobs: bool
    include_usage: bool
    plan: ToolPlan | None = None
    held: str = ""  # a possible tool call's text, held back until it is whole
    text_mode: bool = False  # tool_choice auto: the reply turned out to be text, streamed as usual

    @property
    def calls_tools(self) -> bool:
        return self.plan is not None and self.plan.mode != "none" and not self.text_mode

    def chunk(self, delta: dict, reason: str | None = None, logprobs: Any = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
        return {"id": self.rid, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [choice]}

    def piece(self, update: StreamUpdate) -> dict | None:
        delta = update.delta
        if self.calls_tools:
            self.held += delta
            if self.plan.mode != "auto" or not self.held.strip() or self.held.lstrip().startswith("{"):
                return None
            self.text_mode, delta = True, self.held  # auto, and not a call: the text so far, then as it comes
        if not (delta or (self.logprobs and update.tokens)):
            return None
        logprobs = {"content": token_logprobs(update)} if self.logprobs else None
        return self.chunk({"content": delta}, logprobs=logprobs)

    def tail(self, stats: Any) -> list[dict]:
        reason = finish_reason(stats.finish_reason if stats else "stop")
        end = []
        if self.calls_tools:
            calls = parse_call(self.held, self.plan)
            if calls:
                end.append(self.chunk({"tool_calls": [{"index": 0, **call} for call in calls]}))
                reason = "tool_calls"
            elif self.held:  # cut off by max_tokens before the call was whole: what there is, as text
                end.append(self.chunk({"content": self.held}))
        end.append(self.chunk({}, reason))
        if self.include_usage:
            end.append({"id": self.rid, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": usage(stats)})
        return end

    def whole(self, updates: list[StreamUpdate], stats: Any, reason: str) -> dict:
        logprobs = {"content": [t for u in updates for t in token_logprobs(u)]} if self.logprobs else None
        message: dict[str, Any] = {"role": "assistant", "content": "".join(u.delta for u in updates)}
        calls = parse_call(message["content"], self.plan) if self.calls_tools else None
        if calls:
            message, reason = {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
        return {"id": self.rid, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": reason}],
                "usage": usage(stats)}


async def chat_completions(body: ChatBody, request: Request, deps: ApiDeps):
    try:
        owner = caller(request, deps)
        plan = tool_plan(body.tools, body.tool_choice)
        constraint = request_constraint(body)
        if plan is not None and plan.constraint is not None and constraint is not None:
            raise ApiError(400, "send tools or an output constraint, not both (tool calls are constrained "
                                "already)", param="tools")
        messages = with_tools(chat_messages(body.messages), plan)
        check_chars(sum(len(m["content"]) for m in messages), deps.max_input_chars)
        params = generation_params(body, deps.max_new_tokens, body.max_completion_tokens or body.max_tokens)
        model, stop = body.model or deps.catalog.default("chat"), threading.Event()
        constraint = constraint or (plan.constraint if plan else None)
        stream = deps.text.chat(model, messages, params, stop=stop, with_probs=body.logprobs,
                                stop_strings=stop_strings(body.stop), owner=owner,
                                **({"constraint": constraint} if constraint else {}))
        run, first = await start_run(stream, stop, deps)
    except Exception as exc:
        return error_response(exc)
    reply = ChatReply(new_id("chatcmpl"), now(), model, body.logprobs,
                      bool((body.stream_options or {}).get("include_usage")), plan)
    if body.stream:
        return sse_response(run, first, [reply.chunk({"role": "assistant", "content": ""})], reply.piece,
                            reply.tail)
    try:
        return reply.whole(*await collect(run, first))
    except Exception as exc:
        return error_response(exc)


@dataclass
class CompletionReply:
    """Builds the chunks and the final object of one text completion."""

    rid: str
    created: int
    model: str
    logprobs: bool

    def choice(self, text: str, updates: list[StreamUpdate], reason: str | None) -> dict:
        lp = None
        if self.logprobs:
            pieces = [t for u in updates for t in token_logprobs(u)]
            lp = {"tokens": [p["token"] for p in pieces], "token_logprobs": [p["logprob"] for p in pieces],
                  "top_logprobs": None, "text_offset": None}
        return {"index": 0, "text": text, "logprobs": lp, "finish_reason": reason}

    def record(self, choices: list[dict], **extra: Any) -> dict:
        return {"id": self.rid, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": choices, **extra}

    def piece(self, update: StreamUpdate) -> dict | None:
        if not (update.delta or (self.logprobs and update.tokens)):
            return None
        return self.record([self.choice(update.delta, [update], None)])

    def tail(self, stats: Any) -> list[dict]:
        reason = finish_reason(stats.finish_reason if stats else "stop")
        return [self.record([self.choice("", [], reason)], usage=usage(stats))]


async def completions(body: CompletionBody, request: Request, deps: ApiDeps):
    try:
        owner = caller(request, deps)
        prompt = single_prompt(body.prompt)
        check_chars(len(prompt), deps.max_input_chars)
        params = generation_params(body, deps.max_new_tokens, body.max_tokens)
        constraint = request_constraint(body)
        model, stop = body.model or deps.catalog.default("text-generation"), threading.Event()
        stream = deps.text.complete(model, prompt, params, stop_strings=stop_strings(body.stop), stop=stop,
                                    with_probs=body.logprobs is not None, owner=owner,
                                    **({"constraint": constraint} if constraint else {}))
        run, first = await start_run(stream, stop, deps)
    except Exception as exc:
        return error_response(exc)
    reply = CompletionReply(new_id("cmpl"), now(), model, body.logprobs is not None)
    if body.stream:
        head = [reply.record([reply.choice(prompt, [], None)])] if body.echo else []
        return sse_response(run, first, head, reply.piece, reply.tail)
    try:
        updates, stats, reason = await collect(run, first)
    except Exception as exc:
        return error_response(exc)
    text = (prompt if body.echo else "") + "".join(u.delta for u in updates)
    return reply.record([reply.choice(text, updates, reason)], usage=usage(stats))
