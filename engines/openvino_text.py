"""The quantized CPU engine: OpenVINO GenAI's continuous batching pipeline behind the same `Batcher` interface.

The pipeline runs in a process of its own (engines/openvino_worker.py, started by engines/openvino_process.py): its
`step()` keeps the interpreter lock while it computes, which in this process would hold up every other thread (HTTP,
gradio, the next person's prompt) for the length of each step. Here one thread per loaded model sends waiting
requests to that process (up to `max_batch` at once; they join at its next step) and hands each request's tokens to
its queue as ("token" | "end" | "error", value, probability) triples, exactly like `engines.batching.Batcher`, so
`GenerationRun` streams either one. Unloading the model ends its process, which gives all of its memory back.

What the engine gives per request: its own sampling settings and seed (the same text alone or in a batch), the
probability of the chosen token only (no alternatives), and a stop at once (no token after the flag is passed on;
the engine drops the request at its next step). Its prefix cache is off: it is shared by all requests and keyed by
tokens alone, so a prompt someone else sent before would start faster, and that timing would tell one person what
another wrote (see engines/prefix_cache.py); prompts are prefilled whole.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import queue
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from engines import openvino_process
from engines.batching import BatchStats, WaitingLine
from engines.cache import Loaded
from engines.constraints import Constraint
from engines.generation import TextModel
from engines.gguf_openvino import ensure_tokenizer, facts
from engines.openvino_process import EngineProcess
from engines.params import GenerationParams
from errors import InvalidInput, Unavailable

logger = logging.getLogger(__name__)
ENGINE = "openvino"
POLL_S = 0.02  # how often the batch thread looks at stop flags while the engine computes a step
KV_BLOCK_TOKENS = 32  # tokens per key/value block in OpenVINO's CPU plugin (1 GB held 2,452 blocks of SmolLM2)
_LIVE: weakref.WeakSet[OpenVINOBatcher] = weakref.WeakSet()

# f32 activations: the CPU's default bf16 turns the repaired zero points (engines/gguf_openvino.py) into garbage in
# the batching pipeline, and f32 keeps replies next to the float32 path; the speed difference was within noise here.
# The key/value cache stays at the engine's default u8 (f32 was 15% slower, measured 2026-12-02).
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
    rid: int = 0


class OpenVINOBatcher(WaitingLine):
    """Runs one OpenVINO pipeline's requests as one continuously refilled batch (see the module docstring).

    Args:
        process: the engine process, its pipeline built.
        eos_ids: tokens that end a sequence.
        max_batch: most requests in the pipeline at once; more wait here, in order.
        max_waiting: most requests waiting; more are refused with `QueueFull`.
    """

    note = "prefix reuse off (the engine's cache is shared across people)"
    worker_name = "openvino-batch"
    compiles_constraints = True  # constraints go to the engine's own structured output, not an xgrammar matcher

    def __init__(self, process: EngineProcess, eos_ids: list[int], *, max_batch: int = 8, max_waiting: int = 64):
        self.process, self.eos_ids = process, eos_ids
        self.max_batch, self.max_waiting = max(1, max_batch), max_waiting
        self._cond = threading.Condition()
        self._waiting: deque[OVRequest] = deque()
        self._active: dict[int, OVRequest] = {}
        self._thread: threading.Thread | None = None
        self._closing = False
        self.ended = ""  # why the engine process is gone, once it is (engines/text.py then loads the model again)
        self._resident: int | None = None
        self._steps = self._served = self._next_id = 0
        # a new request wakes the batch thread at once (it would otherwise wait for the engine's next message)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # a full pipe already means "wake up"
        self._finalizer = weakref.finalize(self, _release, process, self._wake_r, self._wake_w)
        _LIVE.add(self)

    def submit(self, ids: list[int], params: GenerationParams, seed: int, stop: threading.Event,
               with_probs: bool = False, owner: str = "", constraint: Constraint | None = None,
               matcher: None = None) -> OVRequest:
        """Queue a generation; its tokens arrive on the returned request's `out` queue."""
        if not ids:
            raise InvalidInput("the prompt has no tokens")
        if self.ended:
            raise Unavailable(f"the model's engine process has ended ({self.ended}); unload the model in the "
                              f"Models tab and load it again")
        req = OVRequest(list(ids), params, seed, stop, with_probs, owner, constraint)
        self._enqueue(req)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"+")
        return req

    def close(self, timeout: float = 5.0) -> None:
        """End every request (with an error saying why) and the engine process."""
        with self._cond:
            self._closing = True
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._finalizer()

    def stats(self) -> BatchStats:
        with self._cond:
            return BatchStats(running=len(self._active), waiting=len(self._waiting), max_batch=self.max_batch,
                              steps=self._steps, served=self._served)

    def position(self, req: OVRequest) -> int:
        """0 when the request is running (or done), else its place among those waiting (1 = next)."""
        with self._cond:
            return self._waiting.index(req) + 1 if req in self._waiting else 0

    def resident_bytes(self) -> int:
        """The engine process's resident memory, after it gives back what its build left (freed heap, the weights
        file's pages: openvino_worker.release_build_leftovers)."""
        self._resident = None
        self.process.send(("trim",))
        while self._resident is None:
            self._receive(0.1)
        return self._resident

    # -- the worker -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while self._loop_once():
                pass
        except BaseException as exc:  # a failure here must not leave callers waiting forever
            logger.exception("OpenVINO batch worker failed")
            self._fail_all(exc)

    def _loop_once(self) -> bool:
        with self._cond:
            if self._closing:
                self._fail_all(Unavailable("the model is shutting down; send the request again"), locked=True)
                return False
            if not self._waiting and not self._active:
                self._thread = None  # the next submit starts a fresh worker
                return False
            joining = [self._waiting.popleft() for _ in range(min(self.max_batch - len(self._active),
                                                                   len(self._waiting)))]
        for req in joining:
            self._add(req)
        self._drop_stopped()
        self._receive(POLL_S)
        return True

    def _fail_all(self, exc: BaseException, locked: bool = False) -> None:
        if not locked:
            with self._cond:
                return self._fail_all(exc, locked=True)
        for req in [*self._active.values(), *self._waiting]:
            req.out.put(("error", exc, None))
        self._active.clear()
        self._waiting.clear()
        self._thread = None

    def _add(self, req: OVRequest) -> None:
        if req.stop.is_set():
            req.out.put(("end", None, None))
            return
        self._next_id += 1
        req.rid = self._next_id
        with self._cond:
            self._active[req.rid] = req
        self.process.send(("add", req.rid, req.ids, settings(req, self.eos_ids)))

    def _drop_stopped(self) -> None:
        """Requests whose stop flag is set end now: the engine drops them at its next step."""
        for req in [r for r in self._active.values() if r.stop.is_set()]:
            self.process.send(("stop", req.rid))
            self._finish(req)

    def _receive(self, timeout: float) -> None:
        """Wait up to `timeout` for the engine's next message and act on it (one reader at a time)."""
        with self.process.read_lock:
            try:
                ready = wait([self.process.conn, self._wake_r], timeout)
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                if self.process.conn not in ready:
                    return
                message = self.process.conn.recv()
            except (EOFError, OSError):
                self.ended = self.process.ended()
                raise Unavailable(f"the model's engine process ended ({self.ended}); load the model again") \
                    from None
        kind = message[0]
        if kind == "step":
            self._steps += 1
            for rid, tokens, log_probs, finished in message[1]:
                self._deliver(rid, tokens, log_probs, finished)
        elif kind == "refused":  # the engine refused this request's settings: only it fails
            self._error(message[1], RuntimeError(message[2]))
        elif kind == "failed":
            for rid in message[1]:
                self._error(rid, RuntimeError(f"the engine failed a step: {message[2]}"))
        elif kind == "resident":
            self._resident = message[1]

    def _deliver(self, rid: int, tokens: list[int], log_probs: list[float], finished: bool) -> None:
        req = self._active.get(rid)
        if req is None:  # stopped here already
            return
        if req.stop.is_set():  # stopped during the step: its tokens are not passed on
            self.process.send(("stop", rid))
            finished, tokens = True, []
        for i, token in enumerate(tokens):
            prob = math.exp(log_probs[i]) if req.with_probs and i < len(log_probs) else None
            req.out.put(("token", token, prob))
        if finished:
            self._finish(req)

    def _error(self, rid: int, exc: Exception) -> None:
        logger.error("OpenVINO request failed: %s", exc)
        with self._cond:
            req = self._active.pop(rid, None)
        if req is not None:
            req.out.put(("error", exc, None))

    def _finish(self, req: OVRequest) -> None:
        req.out.put(("end", None, None))
        with self._cond:
            if self._active.pop(req.rid, None) is not None:
                self._served += 1


def _release(process: EngineProcess, *fds: int) -> None:
    """When the model is unloaded (or closed): end its engine process, close the wake-up pipe, and have a spare
    process ready for the next load (openvino_process.keep_spare)."""
    process.close()
    for fd in fds:
        os.close(fd)
    openvino_process.keep_spare()


def settings(req: OVRequest, eos_ids: list[int]) -> dict:
    """One request's settings as engines/openvino_worker.py builds the engine's config from them."""
    p = req.params
    return {"max_new_tokens": p.max_new_tokens, "eos_ids": list(eos_ids), "repetition_penalty": p.repetition_penalty,
            "greedy": p.greedy, "temperature": p.temperature, "top_p": p.top_p, "top_k": p.top_k, "seed": req.seed,
            "with_probs": req.with_probs,
            "constraint": (req.constraint.kind, req.constraint.text) if req.constraint is not None else None}


def load_folder(folder: Path, name: str, source: str, *, threads: int | None, max_batch: int,
                max_waiting: int, kv_tokens: int = 0) -> Loaded:
    """Load an OpenVINO model folder (from engines/gguf_openvino.py) as a text model for the cache.

    The memory shown is what the model really holds: the engine process's resident memory after a first generation
    (which is when the engine lays out its weights), plus what the tokenizer added to this process.
    """
    import psutil
    from transformers import AutoConfig, AutoTokenizer

    me = psutil.Process(os.getpid())
    before = me.memory_info().rss
    ensure_tokenizer(folder)
    process = openvino_process.start(name)
    try:
        with ThreadPoolExecutor(1) as pool:  # the tokenizer loads here while the engine process builds the model
            tokenizer_job = pool.submit(AutoTokenizer.from_pretrained, folder)
            process.load(folder, scheduler(max_batch, kv_tokens),
                         dict(PROPERTIES, **({"INFERENCE_NUM_THREADS": threads} if threads else {})))
            tokenizer = tokenizer_job.result()
    except BaseException:
        process.close()
        raise
    config = AutoConfig.from_pretrained(folder)
    eos = config.eos_token_id
    eos_ids = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []),
                      *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})
    batcher = OpenVINOBatcher(process, eos_ids, max_batch=max_batch or 1, max_waiting=max_waiting)
    tm = TextModel(model=process, tokenizer=tokenizer, context_length=int(config.max_position_embeddings),
                   eos_ids=eos_ids, batcher=batcher)
    _warm_up(batcher, tokenizer)
    here = max(0, me.memory_info().rss - before)  # the tokenizer, in this process
    memory = batcher.resident_bytes() + here
    built = facts(folder)

    def resident() -> int | None:  # the Models tab shows the engine process as it is now
        now = process.resident_bytes()
        return None if now is None else now + here

    return Loaded(value=tm, task="text-generation", device="cpu", dtype=f"GGUF {built['main_type']}, f32 compute",
                  parameters=built["parameters"], memory_bytes=memory, source=source, engine=ENGINE,
                  resident=resident)


def scheduler(max_batch: int, kv_tokens: int = 0) -> dict:
    """The engine's scheduler settings (engines/openvino_worker.py applies them).

    The key/value cache holds `kv_tokens` tokens (default: 2,048 per sequence of a full batch, at least 8,192; for
    SmolLM2 about 13 KB a token). It is sized, not left at a gigabyte, because the engine touches its blocks in turn:
    under a load test the process grew by the whole pool (400 MB -> 1.6 GB after 320 requests with 1 GB; flat at
    ~680 MB with 300 blocks). More tokens than it holds wait (or are recomputed) instead of failing.
    """
    tokens = kv_tokens or max(8192, max(1, max_batch) * 2048)
    return {"cache_size": 0, "num_kv_blocks": -(-tokens // KV_BLOCK_TOKENS), "max_num_seqs": max(1, max_batch),
            "enable_prefix_caching": False}  # shared across owners: see the module docstring


# Long enough to be a prompt of many tokens: the engine lays out its weights for such a prompt separately from one
# token at a time, and a one-token warm-up ("Hello") left that to the first person (0.28 s first token, not 0.065).
WARM_UP_PROMPT = "Warming up: the engine builds its kernels for a prompt of many tokens, then for one token a step."


def _warm_up(batcher: OpenVINOBatcher, tokenizer) -> None:
    """One short generation: the first one after a load is slow (weights laid out, pages faulted in)."""
    req = batcher.submit(tokenizer(WARM_UP_PROMPT).input_ids, GenerationParams(temperature=0, max_new_tokens=2), 0,
                         threading.Event())
    while (item := req.out.get())[0] == "token":
        pass
    if item[0] == "error":
        batcher.close()
        raise item[1]


@atexit.register
def _close_all() -> None:
    openvino_process.close_spare()  # first: the processes ended below must not start a spare on the way out
    for batcher in list(_LIVE):
        batcher.close()
