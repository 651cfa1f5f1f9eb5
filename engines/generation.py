"""One streamed generation: `generate` runs in a thread, its tokens come back through a queue.

torch and transformers are imported when a run starts, so importing this module (and starting the app) stays fast.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from engines.constraints import Constraint
from engines.params import GenerationParams
from engines.utf8_guard import Utf8Matcher, Utf8Table

logger = logging.getLogger(__name__)


class GenerationError(RuntimeError):
    """The model failed while generating; `partial` holds the text produced before the failure."""

    def __init__(self, message: str, partial: str = ""):
        super().__init__(message)
        self.partial = partial


@dataclass
class TextModel:
    """What the cache holds for a text model."""

    model: object
    tokenizer: object
    context_length: int
    eos_ids: list[int]
    batcher: object | None = None  # a engines.batching.Batcher when concurrent requests can share forward passes
    compiler: object | None = field(default=None, repr=False)  # xgrammar's, built at the first constrained request
    utf8: object | None = field(default=None, repr=False)  # engines.utf8_guard.Utf8Table, built with the compiler

    def compiled(self, constraint):
        """`constraint` compiled against this model's vocabulary (torch path; OpenVINO compiles its own)."""
        import xgrammar as xgr

        if self.compiler is None:
            vocab = getattr(getattr(self.model, "config", None), "vocab_size", None)
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab, stop_token_ids=self.eos_ids)
            self.utf8 = Utf8Table(list(info.decoded_vocab))
            self.compiler = xgr.GrammarCompiler(info, max_threads=1)
        return self.compiler.compile_grammar(constraint.grammar())

    def activity(self) -> str:
        """What the model is doing now, for the Models tab."""
        if self.batcher is None:
            return "one generate() per request"
        s = self.batcher.stats()
        reused = (f"; {s.reused_tokens} prompt tokens reused, prefix cache {s.prefix_bytes / 2**20:.0f} MB"
                  if s.reused_tokens else "")
        note = getattr(self.batcher, "note", "")
        return (f"{s.running} running, {s.waiting} waiting (batch of up to {s.max_batch}; {s.served} served{reused})"
                + (f"; {note}" if note else ""))


@dataclass(frozen=True)
class GenerationStats:
    model: str
    prompt_tokens: int
    generated_tokens: int
    ttft_s: float
    total_s: float
    tokens_per_s: float
    finish_reason: str  # eos | length | stop | stop_string
    seed: int
    trimmed_messages: int = 0
    trimmed_prompt_tokens: int = 0


@dataclass
class StreamUpdate:
    """One step of a stream: new visible text, the new tokens with probabilities, and stats on the last update."""

    delta: str = ""
    tokens: list[tuple[str, float | None]] = field(default_factory=list)
    stats: GenerationStats | None = None


class GenerationRun:
    """Runs `model.generate` in a daemon thread and turns its tokens into `StreamUpdate`s.

    Args:
        tm: the loaded model and tokenizer.
        ids: prompt token ids.
        params: validated sampling parameters.
        stop: set it to end generation at the next token; the run sets it too when the consumer goes away.
        stop_strings: generation ends when the text reaches one of these (not included in the output).
        with_probs: record each token's probability.
        owner: who asks (a person, an API key): in a batch, only their own earlier prompts are reused.
        constraint: what the output must match (engines/constraints.py), or None for free text.
    """

    def __init__(self, tm: TextModel, ids: list[int], params: GenerationParams, stop: threading.Event,
                 stop_strings: tuple[str, ...] = (), with_probs: bool = False, owner: str = "",
                 constraint: Constraint | None = None):
        self.tm, self.ids, self.params, self.stop, self.owner = tm, ids, params, stop, owner
        self.constraint = constraint
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.with_probs = with_probs
        self.seed = params.seed if params.seed >= 0 else random.randrange(2**31)
        self.thread: threading.Thread | None = None

    def _generate_kwargs(self, streamer, recorder) -> dict:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from engines.streaming import StopFlag

        model, p = self.tm.model, self.params
        input_ids = torch.tensor([self.ids], device=model.device)
        kwargs = dict(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=p.max_new_tokens,
            streamer=streamer, stopping_criteria=StoppingCriteriaList([StopFlag(self.stop)]),
            eos_token_id=self.tm.eos_ids or None, pad_token_id=(self.tm.eos_ids or [0])[0],
            repetition_penalty=p.repetition_penalty,
        )
        processors = [recorder] if recorder is not None else []
        if self.constraint is not None:  # before the recorder: the probability is the constrained one
            from xgrammar.contrib.hf import LogitsProcessor

            processors.insert(0, LogitsProcessor(self.tm.compiled(self.constraint)))
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        if p.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k or None)
        return kwargs

    def _start(self):
        if self.tm.batcher is not None:
            return self.tm.batcher.submit(self.ids, self.params, self.seed, self.stop, self.with_probs, self.owner,
                                          constraint=self.constraint, matcher=self._matcher())
        import torch

        from engines.streaming import ProbabilityRecorder, QueueStreamer

        recorder = ProbabilityRecorder() if self.with_probs else None
        streamer = QueueStreamer(recorder)
        kwargs = self._generate_kwargs(streamer, recorder)

        threads = torch.get_num_threads()

        def work() -> None:
            try:
                # OpenMP keeps its thread count per OS thread: without this, a new thread runs torch on every core
                # whatever --threads said (and on 2 busy cores that is several times slower)
                torch.set_num_threads(threads)
                torch.manual_seed(self.seed)
                with torch.inference_mode():
                    self.tm.model.generate(**kwargs)
            except BaseException as exc:  # handed to the consumer, which raises it in the request
                logger.exception("generation failed")
                streamer.fail(exc)

        self.thread = threading.Thread(target=work, name="generate", daemon=True)
        self.thread.start()
        return streamer

    def _matcher(self):
        """The torch batcher's per-request matcher; OpenVINO's batcher takes the constraint itself."""
        if self.constraint is None or getattr(self.tm.batcher, "compiles_constraints", False):
            return None
        import xgrammar as xgr

        compiled = self.tm.compiled(self.constraint)
        return Utf8Matcher(xgr.GrammarMatcher(compiled), self.tm.utf8)

    def stream(self, model_name: str, start: float, trim: dict[str, int]) -> Iterator[StreamUpdate]:
        """Yield updates as tokens arrive; the last one carries the stats."""
        from engines.streaming import IncrementalDecoder, StopStringScan

        decoder = IncrementalDecoder(self.tm.tokenizer)
        scan = StopStringScan(self.stop_strings) if self.stop_strings else None
        streamer = self._start()
        n, ttft, text, reason = 0, None, "", "eos"
        try:
            while True:
                kind, value, prob = streamer.out.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise GenerationError(f"the model failed after {n} tokens: {value}", partial=text) from value
                if reason == "stop_string" or self.stop.is_set():
                    continue  # the model ran on a token or two before it saw the flag: Stop means no more text
                n += 1
                piece = decoder.push(value)
                delta = piece
                if scan is not None:
                    delta, hit = scan.feed(piece)
                    if hit:
                        reason = "stop_string"
                        self.stop.set()
                if delta and ttft is None:
                    ttft = time.perf_counter() - start
                text += delta
                yield StreamUpdate(delta=delta, tokens=[(piece, prob)])
            if reason != "stop_string":
                if self.stop.is_set():
                    reason = "stop"
                elif n >= self.params.max_new_tokens:
                    reason = "length"
        finally:
            self.stop.set()  # a consumer that went away (Stop, disconnect) ends the thread within a token
            if self.thread is not None:
                self.thread.join(timeout=10)
        tail = scan.flush() if scan is not None and reason != "stop_string" else ""
        total = time.perf_counter() - start
        ttft = ttft if ttft is not None else total
        decode_time = total - ttft
        stats = GenerationStats(
            model=model_name, prompt_tokens=len(self.ids), generated_tokens=n, ttft_s=round(ttft, 4),
            total_s=round(total, 4), tokens_per_s=round((n - 1) / decode_time, 2) if n > 1 and decode_time > 0 else 0.0,
            finish_reason=reason, seed=self.seed, **trim,
        )
        yield StreamUpdate(delta=tail, stats=stats)
