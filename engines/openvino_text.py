"""The quantized CPU engine: OpenVINO GenAI's continuous batching pipeline behind the same `Batcher` interface.

One worker thread per loaded model adds waiting requests to the pipeline (up to `max_batch` at once; they join at
the next step), runs its steps and hands each request's tokens to its queue as ("token" | "end" | "error", value,
probability) triples, exactly like `engines.batching.Batcher`, so `GenerationRun` streams either one.

What the engine gives per request: its own sampling settings and seed (the same text alone or in a batch), the
probability of the chosen token only (no alternatives), and a stop at the next step. Its prefix cache is off: it
is shared by all requests and keyed by tokens alone, so a prompt someone else sent before would start faster, and
that timing would tell one person what another wrote (see engines/prefix_cache.py); prompts are prefilled whole.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import math
import os
import queue
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from engines.batching import BatchStats, WaitingLine
from engines.cache import Loaded
from engines.constraints import Constraint
from engines.generation import TextModel
from engines.gguf_openvino import facts
from engines.params import GenerationParams
from errors import InvalidInput, Unavailable

logger = logging.getLogger(__name__)
ENGINE = "openvino"
_LIVE: weakref.WeakSet[OpenVINOBatcher] = weakref.WeakSet()

# f32 activations: the CPU's default bf16 turns the repaired zero points (engines/gguf_openvino.py) into garbage in
# the batching pipeline, and f32 keeps replies next to the float32 path; the speed difference was within noise here.
# The key/value cache stays at the engine's default u8.
PROPERTIES = {"INFERENCE_PRECISION_HINT": "f32"}


def available() -> bool:
    """Whether the OpenVINO GenAI wheel is installed (imported only when a model loads)."""
    import importlib.util

    return importlib.util.find_spec("openvino_genai") is not None


@dataclass(eq=False)
class OVRequest:
    ids: list[int]
    params: GenerationParams
    seed: int
    stop: threading.Event
    with_probs: bool = False
    owner: str = ""  # kept for the interface: this engine shares no prompt's cache between requests
    constraint: Constraint | None = None  # compiled by the engine itself (its structured output)
    out: queue.Queue = field(default_factory=queue.Queue)
    handle: object = None
    generated: int = 0


class OpenVINOBatcher(WaitingLine):
    """Runs one OpenVINO pipeline's requests as one continuously refilled batch (see the module docstring).

    Args:
        pipe: an `openvino_genai.ContinuousBatchingPipeline`.
        eos_ids: tokens that end a sequence.
        max_batch: most requests in the pipeline at once; more wait here, in order.
        max_waiting: most requests waiting; more are refused with `QueueFull`.
    """

    note = "prefix reuse off (the engine's cache is shared across people)"
    worker_name = "openvino-batch"
    compiles_constraints = True  # constraints go to the engine's own structured output, not an xgrammar matcher

    def __init__(self, pipe, eos_ids: list[int], *, max_batch: int = 8, max_waiting: int = 64):
        self.pipe, self.eos_ids = pipe, eos_ids
        self.max_batch, self.max_waiting = max(1, max_batch), max_waiting
        self._cond = threading.Condition()
        self._waiting: deque[OVRequest] = deque()
        self._active: list[OVRequest] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self._steps = self._served = self._next_id = 0
        _LIVE.add(self)

    def submit(self, ids: list[int], params: GenerationParams, seed: int, stop: threading.Event,
               with_probs: bool = False, owner: str = "", constraint: Constraint | None = None,
               matcher: None = None) -> OVRequest:
        """Queue a generation; its tokens arrive on the returned request's `out` queue."""
        if not ids:
            raise InvalidInput("the prompt has no tokens")
        req = OVRequest(list(ids), params, seed, stop, with_probs, owner, constraint)
        self._enqueue(req)
        return req

    def close(self, timeout: float = 5.0) -> None:
        """End every request (with an error saying why) and wait for the worker to leave the engine's code."""
        with self._cond:
            self._closing = True
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def stats(self) -> BatchStats:
        with self._cond:
            return BatchStats(running=len(self._active), waiting=len(self._waiting), max_batch=self.max_batch,
                              steps=self._steps, served=self._served)

    def position(self, req: OVRequest) -> int:
        """0 when the request is running (or done), else its place among those waiting (1 = next)."""
        with self._cond:
            return self._waiting.index(req) + 1 if req in self._waiting else 0

    # -- the worker -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while self._loop_once():
                pass
        except BaseException as exc:  # a failure here must not leave callers waiting forever
            logger.exception("OpenVINO batch worker failed")
            with self._cond:
                for req in [*self._active, *self._waiting]:
                    req.out.put(("error", exc, None))
                self._active, self._thread = [], None
                self._waiting.clear()

    def _loop_once(self) -> bool:
        with self._cond:
            if self._closing:
                for req in [*self._active, *self._waiting]:
                    req.out.put(("error", Unavailable("the model is shutting down; send the request again"), None))
                self._active, self._thread = [], None
                self._waiting.clear()
                return False
            if not self._waiting and not self._active:
                self._thread = None  # the next submit starts a fresh worker
                return False
            joining = [self._waiting.popleft() for _ in range(min(self.max_batch - len(self._active),
                                                                   len(self._waiting)))]
        for req in joining:
            self._add(req)
        self._drop_stopped()
        if self.pipe.has_non_finished_requests():
            self.pipe.step()
            self._steps += 1
        self._collect()
        return True

    def _add(self, req: OVRequest) -> None:
        import numpy as np
        import openvino as ov

        if req.stop.is_set():
            req.out.put(("end", None, None))
            return
        self._next_id += 1
        try:
            ids = ov.Tensor(np.asarray([req.ids], dtype=np.int64))
            req.handle = self.pipe.add_request(self._next_id, ids, generation_config(req, self.eos_ids))
        except RuntimeError as exc:  # the engine refused this request's settings: only it fails
            logger.error("OpenVINO refused a request: %s", exc)
            req.out.put(("error", exc, None))
            return
        with self._cond:
            self._active.append(req)

    def _drop_stopped(self) -> None:
        """Requests whose stop flag is set end now: at most the token being computed is lost."""
        for req in [r for r in self._active if r.stop.is_set()]:
            req.handle.stop()
            self._finish(req)

    def _collect(self) -> None:
        import openvino_genai as og

        for req in list(self._active):
            if req.stop.is_set():  # stopped during this step: its token is not sent
                req.handle.stop()
                self._finish(req)
                continue
            if req.handle.can_read():
                for output in req.handle.read().values():
                    logprobs = output.generated_log_probs if req.with_probs else []
                    for i, token in enumerate(output.generated_ids):
                        prob = math.exp(logprobs[i]) if i < len(logprobs) else None
                        req.generated += 1
                        req.out.put(("token", int(token), prob))
            if req.handle.get_status() != og.GenerationStatus.RUNNING:
                self._finish(req)

    def _finish(self, req: OVRequest) -> None:
        req.out.put(("end", None, None))
        with self._cond:
            self._active.remove(req)
            self._served += 1


def generation_config(req: OVRequest, eos_ids: list[int]):
    """The engine's settings for one request: its own sampling, seed, length and probabilities."""
    import openvino_genai as og

    p = req.params
    config = og.GenerationConfig()
    config.max_new_tokens = p.max_new_tokens
    if eos_ids:
        config.set_eos_token_id(eos_ids[0])
        config.stop_token_ids = set(eos_ids)
    config.repetition_penalty = p.repetition_penalty
    config.do_sample = not p.greedy
    if not p.greedy:
        config.temperature, config.top_p, config.rng_seed = p.temperature, p.top_p, req.seed
        if p.top_k:
            config.top_k = p.top_k
    config.logprobs = 1 if req.with_probs else 0
    if req.constraint is not None:
        config.structured_output_config = structured_output(req.constraint)
    return config


def structured_output(constraint: Constraint):
    """The engine's structured output settings for a constraint already checked by engines/constraints.py."""
    import openvino_genai as og

    from engines.constraints import FREE_TEXT

    config = og.StructuredOutputConfig
    if constraint.kind == "json_or_text":  # the engine's own union: its xgrammar is older than the one we check with
        return config(compound_grammar=config.Union(config.JSONSchema(constraint.text), config.Regex(FREE_TEXT)))
    return config(**{constraint.kind: constraint.text})


def ensure_tokenizer(folder: Path) -> None:
    """Write the engine's own tokenizer models beside the model once: its structured output reads the vocabulary
    from them (without them every constrained request fails with \"the tokenizer has no vocabulary entries\")."""
    if (folder / "openvino_tokenizer.xml").exists() and (folder / "openvino_detokenizer.xml").exists():
        return
    import openvino as ov
    import openvino_tokenizers
    from transformers import AutoTokenizer

    tokenizer, detokenizer = openvino_tokenizers.convert_tokenizer(AutoTokenizer.from_pretrained(folder),
                                                                   with_detokenizer=True)
    for name, model in (("openvino_tokenizer", tokenizer), ("openvino_detokenizer", detokenizer)):
        ov.save_model(model, folder / f"{name}.tmp.xml")
        for suffix in (".xml", ".bin"):  # renamed last, so a half-written pair is never taken for a whole one
            (folder / f"{name}.tmp{suffix}").replace(folder / f"{name}{suffix}")


def load_folder(folder: Path, name: str, source: str, *, threads: int | None, max_batch: int,
                max_waiting: int, kv_cache_gb: int = 1) -> Loaded:
    """Load an OpenVINO model folder (from engines/gguf_openvino.py) as a text model for the cache.

    The memory shown is what the process really gained: resident memory before and after loading and a first
    generation (which is when the engine lays out its weights).
    """
    import psutil
    from transformers import AutoConfig, AutoTokenizer

    process = psutil.Process(os.getpid())
    before = process.memory_info().rss
    ensure_tokenizer(folder)
    with ThreadPoolExecutor(1) as pool:  # the tokenizer loads while the engine compiles (a warm load is ~2 s)
        tokenizer_job = pool.submit(AutoTokenizer.from_pretrained, folder)
        pipe = _pipeline(folder, threads, max_batch, kv_cache_gb)
        tokenizer = tokenizer_job.result()
    config = AutoConfig.from_pretrained(folder)
    eos = config.eos_token_id
    eos_ids = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []),
                      *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})
    batcher = OpenVINOBatcher(pipe, eos_ids, max_batch=max_batch or 1, max_waiting=max_waiting)
    tm = TextModel(model=pipe, tokenizer=tokenizer, context_length=int(config.max_position_embeddings),
                   eos_ids=eos_ids, batcher=batcher)
    _warm_up(batcher, tokenizer)
    _trim_heap()
    weights = (folder / "openvino_model.bin").stat().st_size
    built = facts(folder)
    return Loaded(value=tm, task="text-generation", device="cpu", dtype=f"GGUF {built['main_type']}, f32 compute",
                  parameters=built["parameters"], memory_bytes=max(process.memory_info().rss - before, weights),
                  source=source, engine=ENGINE)


def _pipeline(folder: Path, threads: int | None, max_batch: int, kv_cache_gb: int):
    import openvino_genai as og

    scheduler = og.SchedulerConfig()
    scheduler.cache_size, scheduler.max_num_seqs = kv_cache_gb, max(1, max_batch)
    scheduler.enable_prefix_caching = False  # shared across owners: see the module docstring
    properties = dict(PROPERTIES, **({"INFERENCE_NUM_THREADS": threads} if threads else {}))
    return og.ContinuousBatchingPipeline(str(folder), scheduler, "CPU", properties)


def _warm_up(batcher: OpenVINOBatcher, tokenizer) -> None:
    """One short generation: the first one after a load is slow (weights laid out, pages faulted in)."""
    req = batcher.submit(tokenizer("Hello").input_ids, GenerationParams(temperature=0, max_new_tokens=2), 0,
                         threading.Event())
    while (item := req.out.get())[0] == "token":
        pass
    if item[0] == "error":
        raise item[1]


def _trim_heap() -> None:
    """Give the heap the model build left behind back to the system (glibc keeps it otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: nothing to do
        pass


@atexit.register
def _close_all() -> None:
    for batcher in list(_LIVE):
        batcher.close()
