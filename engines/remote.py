"""Remote engines: chat and completion served by an external OpenAI-compatible server.

vLLM, TGI, the llama.cpp server, a Hugging Face Inference Endpoint or another copy of this app can serve the models
while this app serves the people. Entries come from the catalog's "remote" section; the key is read from the
environment variable the entry names, never from the catalog file.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engines.generation import GenerationError, GenerationStats, StreamUpdate
from engines.params import GenerationParams
from errors import Unavailable


class RemoteUnavailable(Unavailable):
    """The remote server could not be reached or refused the request; the message says which and why."""


@dataclass(frozen=True)
class RemoteModel:
    """One catalog entry: the name users pick, where it is served, and under which id."""

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    tasks: tuple[str, ...] = ("chat", "text-generation")
    sampling_extras: bool = True  # send top_k and repetition_penalty (vLLM, TGI, llama.cpp accept them)
    timeout_s: float = 600.0

    def api_key(self) -> str:
        return (os.getenv(self.api_key_env) if self.api_key_env else None) or "none"


class RemoteTextEngine:
    """Streams from remote servers with the same `StreamUpdate`s as the local engine.

    Args:
        models: catalog name -> remote entry.
    """

    def __init__(self, models: dict[str, RemoteModel]):
        self.models = models
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __contains__(self, ref: str) -> bool:
        return ref in self.models

    def _client(self, m: RemoteModel):
        import openai

        with self._lock:
            if m.name not in self._clients:
                self._clients[m.name] = openai.OpenAI(base_url=m.base_url, api_key=m.api_key(), max_retries=1,
                                                      timeout=m.timeout_s)
            return self._clients[m.name]

    def _sampling(self, m: RemoteModel, params: GenerationParams, stop_strings: tuple[str, ...]) -> tuple[dict, int]:
        seed = params.seed if params.seed >= 0 else random.randrange(2**31)
        kw: dict[str, Any] = {"model": m.model, "max_tokens": params.max_new_tokens, "seed": seed, "stream": True,
                              "temperature": params.temperature, "top_p": 1.0 if params.greedy else params.top_p,
                              "stream_options": {"include_usage": True}}
        if stop_strings:
            kw["stop"] = list(stop_strings)
        if m.sampling_extras:
            kw["extra_body"] = {"top_k": params.top_k, "repetition_penalty": params.repetition_penalty}
        return kw, seed

    def chat(self, ref: str, messages: list[dict], params: GenerationParams, stop: threading.Event | None = None,
             with_probs: bool = False, stop_strings: tuple[str, ...] = ()) -> Iterator[StreamUpdate]:
        m = self.models[ref]
        kw, seed = self._sampling(m, params, stop_strings)
        if with_probs:
            kw["logprobs"] = True
        create = lambda: self._client(m).chat.completions.create(messages=messages, **kw)
        yield from self._stream(m, create, lambda c: c.delta.content, _chat_probs, params, seed, stop)

    def complete(self, ref: str, prompt: str, params: GenerationParams, stop_strings: tuple[str, ...] = (),
                 stop: threading.Event | None = None, with_probs: bool = False) -> Iterator[StreamUpdate]:
        m = self.models[ref]
        kw, seed = self._sampling(m, params, stop_strings)
        if with_probs:
            kw["logprobs"] = 1
        create = lambda: self._client(m).completions.create(prompt=prompt, **kw)
        yield from self._stream(m, create, lambda c: c.text, _completion_probs, params, seed, stop)

    def _stream(self, m: RemoteModel, create, text_of, probs_of, params: GenerationParams, seed: int,
                stop: threading.Event | None) -> Iterator[StreamUpdate]:
        import openai

        start = time.perf_counter()
        try:
            stream = create()
        except openai.APIConnectionError as exc:
            raise RemoteUnavailable(f"cannot reach {m.base_url} for {m.name}: {exc}") from exc
        except openai.APIStatusError as exc:
            raise RemoteUnavailable(f"{m.base_url} refused {m.name} (HTTP {exc.status_code}): {_message(exc)}") from exc
        text, n, ttft, reason, usage = "", 0, None, "eos", None
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    delta = text_of(choice) or ""
                    tokens = probs_of(choice)
                    n += len(tokens) if tokens else (1 if delta else 0)
                    if delta and ttft is None:
                        ttft = time.perf_counter() - start
                    text += delta
                    if choice.finish_reason:
                        reason = "length" if choice.finish_reason == "length" else "eos"
                    if delta or tokens:
                        yield StreamUpdate(delta=delta, tokens=tokens or [(delta, None)])
                if stop is not None and stop.is_set():
                    reason = "stop"
                    break
        except (openai.APIError, OSError) as exc:
            raise GenerationError(f"{m.name} on {m.base_url} failed after {n} tokens: {exc}", partial=text) from exc
        finally:
            stream.close()  # ends the HTTP stream, so the remote server stops generating too
        total = time.perf_counter() - start
        ttft = ttft if ttft is not None else total
        generated = usage.completion_tokens if usage is not None else n
        yield StreamUpdate(stats=GenerationStats(
            model=m.name, prompt_tokens=usage.prompt_tokens if usage is not None else 0, generated_tokens=generated,
            ttft_s=round(ttft, 4), total_s=round(total, 4),
            tokens_per_s=round((generated - 1) / (total - ttft), 2) if generated > 1 and total > ttft else 0.0,
            finish_reason=reason, seed=seed))


def _chat_probs(choice) -> list[tuple[str, float | None]]:
    content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
    return [(t.token, math.exp(t.logprob) if t.logprob is not None else None) for t in content or []]


def _completion_probs(choice) -> list[tuple[str, float | None]]:
    lp = choice.logprobs
    if not lp or not lp.tokens:
        return []
    logprobs = lp.token_logprobs or []
    return [(tok, math.exp(p) if p is not None else None) for tok, p in zip(lp.tokens, logprobs, strict=False)]


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)


def parse_remote(data: dict[str, Any], source: str = "catalog") -> dict[str, RemoteModel]:
    """Validate the catalog's "remote" section: name -> {base_url, model?, api_key_env?, tasks?, sampling_extras?}.

    Raises:
        ValueError: naming the entry and what it lacks.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: 'remote' must be an object of name -> server settings")
    models = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("base_url"), str) or \
                not entry["base_url"].startswith(("http://", "https://")):
            raise ValueError(f"{source}: remote {name!r} needs a 'base_url' like http://host:8000/v1")
        if "api_key" in entry:
            raise ValueError(f"{source}: remote {name!r} has an 'api_key'; keep keys out of files and name the "
                             f"environment variable instead ('api_key_env')")
        tasks = tuple(entry.get("tasks", ("chat", "text-generation")))
        models[name] = RemoteModel(name=name, base_url=entry["base_url"].rstrip("/"), model=entry.get("model", name),
                                   api_key_env=entry.get("api_key_env"), tasks=tasks,
                                   sampling_extras=bool(entry.get("sampling_extras", True)),
                                   timeout_s=float(entry.get("timeout_s", 600)))
    return models
