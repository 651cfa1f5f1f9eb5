"""Continuous batching: concurrent requests for one model share its forward passes.

One worker thread per loaded model runs the batch. A request joins at a token boundary: the prompts that arrived
since the last step are prefilled together, their KV cache is left-padded to the batch's length and stacked onto it.
A request leaves when it ends (end of sequence, length, its stop flag) and its rows are cut out of the cache. Each
request keeps its own sampling parameters, random generator (so a seed gives the same text alone or in a batch) and
output queue, which receives the same ("token" | "end" | "error", value, probability) triples as `QueueStreamer`.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import queue
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field

import torch

from engines.params import GenerationParams
from engines.prefix_cache import Prefix, PrefixCache
from engines.sampling import pick_tokens
from errors import InvalidInput, LimitReached, Unavailable

logger = logging.getLogger(__name__)


_LIVE: weakref.WeakSet[Batcher] = weakref.WeakSet()  # closed at exit, see `Batcher.close`


class QueueFull(LimitReached):
    """Too many requests are already waiting for this model; the message says how many."""


class NotBatchable(RuntimeError):
    """The model's cache is not a plain per-layer key/value cache (recurrent or hybrid layers)."""


@dataclass(eq=False)  # a request is itself: compared by identity
class BatchRequest:
    ids: list[int]
    params: GenerationParams
    seed: int
    stop: threading.Event
    with_probs: bool = False
    owner: str = ""  # whose cached prompt starts this request may reuse (see engines/prefix_cache.py)
    out: queue.Queue = field(default_factory=queue.Queue)
    generated: int = 0
    tokens: list[int] = field(default_factory=list)  # generated so far
    failed: bool = False
    length: int = 0  # this row's real (unpadded) tokens in the cache
    next_token: int = 0
    done: bool = False
    seen: set[int] = field(default_factory=set)  # distinct token ids so far, for the repetition penalty
    generator: torch.Generator | None = None
    matcher: object | None = None  # xgrammar's GrammarMatcher when the output is constrained


@dataclass(frozen=True)
class BatchStats:
    running: int
    waiting: int
    max_batch: int
    steps: int
    served: int
    reused_tokens: int = 0  # prompt tokens not prefilled again thanks to the prefix cache
    prefix_bytes: int = 0  # what the prefix cache holds now


class WaitingLine:
    """The queue in front of a batch worker, shared by every engine's batcher: a bounded line of waiting requests
    and one worker thread, started by the first request and gone when nothing is left (subclasses give `_run`)."""

    worker_name = "batcher"
    _cond: threading.Condition
    _waiting: deque
    _thread: threading.Thread | None
    _closing: bool
    max_waiting: int

    def _enqueue(self, req) -> None:
        """Put `req` in line, refusing it when the model is closing or the line is full; wake or start the worker."""
        with self._cond:
            if self._closing:
                raise Unavailable("the model is shutting down; send the request again")
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting for this model (the limit is "
                                f"{self.max_waiting}); try again in a moment")
            self._waiting.append(req)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.worker_name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        raise NotImplementedError


class Batcher(WaitingLine):
    """Runs one model's generations as one continuously refilled batch.

    Args:
        model: a causal LM whose cache is made of plain key/value layers (see `check_batchable`).
        eos_ids: tokens that end a sequence.
        max_batch: most sequences in one forward pass; further requests wait in order.
        max_waiting: most requests waiting for a place; more are refused with `QueueFull`.
        threads: torch threads for the worker (OpenMP keeps the count per OS thread); None leaves torch's default.
        prefix_bytes: memory for keys and values of earlier prompts, reused by prompts of the same owner that start
            the same way (0: every prompt is prefilled whole).
    """

    def __init__(self, model, eos_ids: list[int], *, max_batch: int = 8, max_waiting: int = 64,
                 threads: int | None = None, prefix_bytes: int = 0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model
        self.eos = set(eos_ids)
        self.pad_id = eos_ids[0] if eos_ids else 0
        self.max_batch, self.max_waiting, self.threads = max_batch, max_waiting, threads
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self._cond = threading.Condition()
        self._waiting: deque[BatchRequest] = deque()
        self._active: list[BatchRequest] = []
        self._cache = None
        self._thread: threading.Thread | None = None
        self._steps = self._served = 0
        self._closing = False
        self.prefixes = PrefixCache(prefix_bytes)
        _LIVE.add(self)

    # -- the caller's side ----------------------------------------------------------------------------------
    def submit(self, ids: list[int], params: GenerationParams, seed: int, stop: threading.Event,
               with_probs: bool = False, owner: str = "", constraint=None, matcher=None) -> BatchRequest:
        """Queue a generation; its tokens arrive on the returned request's `out` queue.

        A constrained request brings its xgrammar `matcher` (its `constraint` is for engines that compile their own).
        """
        if not ids:
            raise InvalidInput("the prompt has no tokens")
        req = BatchRequest(ids=list(ids), params=params, seed=seed, stop=stop, with_probs=with_probs, owner=owner,
                           matcher=matcher)
        self._enqueue(req)
        return req

    def close(self, timeout: float = 5.0) -> None:
        """End every request (they get an error saying why) and wait for the worker to leave torch's code.

        Run at interpreter exit: a daemon thread still inside a torch operation when Python finalizes is ended by
        the C++ runtime with an abort ("terminate called without an active exception").
        """
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def stats(self) -> BatchStats:
        with self._cond:
            return BatchStats(running=len(self._active), waiting=len(self._waiting), max_batch=self.max_batch,
                              steps=self._steps, served=self._served, reused_tokens=self.prefixes.reused_tokens,
                              prefix_bytes=self.prefixes.bytes)

    def position(self, req: BatchRequest) -> int:
        """0 when the request is running (or done), else its place among those waiting (1 = next)."""
        with self._cond:
            try:
                return self._waiting.index(req) + 1
            except ValueError:
                return 0

    # -- the worker -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                while self._loop_once():
                    pass
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            logger.exception("batch worker failed")
            with self._cond:
                self._fail_all(exc)

    def _fail_all(self, exc: BaseException) -> None:
        """Every running and waiting request gets `exc`; the worker is gone (call with the lock held)."""
        for req in [*self._active, *self._waiting]:
            req.out.put(("error", exc, None))
        self._active, self._cache, self._thread = [], None, None
        self._waiting.clear()

    def _loop_once(self) -> bool:
        with self._cond:
            if self._closing:
                self._fail_all(Unavailable("the model is shutting down; send the request again"))
                return False
            if not self._waiting and not self._active:
                self._thread, self._cache = None, None  # the next submit starts a fresh worker
                return False
            room = self.max_batch - len(self._active)
            joining = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
        for req in joining:
            if req.stop.is_set():
                req.done = True
                req.out.put(("end", None, None))
        joining = [r for r in joining if not r.done]
        if joining:
            self._admit(joining)
        self._retire()
        if self._active:
            self._step()
            self._retire()
        return True

    def _forward(self, input_ids, attention_mask, position_ids, cache):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        return out.logits[:, -1, :].float()

    def _admit(self, joining: list[BatchRequest]) -> None:
        """Prefill the newcomers and stack their cache onto the batch's; one failure fails only its own.

        A newcomer whose prompt starts like one its owner sent before is prefilled alone, from where it differs;
        the others together.
        """
        fresh = []
        for req in joining:
            prefix = self.prefixes.find(req.owner, req.ids) if self.prefixes.max_bytes else None
            if prefix is None:
                fresh.append(req)
            else:
                self._prefill([req], prefix)
        if fresh:
            self._prefill(fresh, None)

    def _prefill(self, joining: list[BatchRequest], prefix: Prefix | None) -> None:
        from transformers import DynamicCache

        start = prefix.length if prefix is not None else 0  # only with a single newcomer
        width = max(len(r.ids) for r in joining) - start
        ids = torch.full((len(joining), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(joining), width), dtype=torch.long)
        for i, req in enumerate(joining):
            ids[i, width - len(req.ids) + start:] = torch.tensor(req.ids[start:])
            mask[i, width - len(req.ids) + start:] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0) + start
        cache = DynamicCache()
        device = self.model.device
        if prefix is not None:
            for layer, (keys, values) in enumerate(prefix.layers):
                cache.update(keys.to(device), values.to(device), layer)
        padded = bool((mask == 0).any())
        try:
            logits = self._forward(ids.to(device), mask.to(device) if padded else None, positions.to(device), cache)
            check_batchable(cache)
        except NotBatchable:
            raise
        except Exception as exc:
            if len(joining) > 1:  # find the one that fails
                for req in joining:
                    self._prefill([req], None)
                return
            logger.exception("prefill failed")
            joining[0].done = joining[0].failed = True
            joining[0].out.put(("error", exc, None))
            return
        if self.prefixes.max_bytes:
            for i, req in enumerate(joining):
                self.prefixes.put(req.owner, req.ids, _row_layers(cache, i, len(req.ids)))
        self._stack(cache)
        for req in joining:
            req.length = len(req.ids)
            req.seen = set(req.ids)
            req.generator = torch.Generator(device=logits.device).manual_seed(req.seed)
            self._active.append(req)
        self._emit(joining, logits)

    def _stack(self, cache) -> None:
        if self._cache is None or not self._active:
            self._cache = cache
            return
        old, new = self._cache.get_seq_length(), cache.get_seq_length()
        width = max(old, new)
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=False):
            mine.keys = torch.cat([_pad_left(mine.keys, width - old), _pad_left(theirs.keys, width - new)])
            mine.values = torch.cat([_pad_left(mine.values, width - old), _pad_left(theirs.values, width - new)])

    def _step(self) -> None:
        """One token for every running request."""
        device = self.model.device
        width = self._cache.get_seq_length()
        lengths = torch.tensor([r.length for r in self._active])
        mask = None  # without padding in the cache the model's own causal path is the fast one
        if bool((lengths < width).any()):
            mask = (torch.arange(width + 1)[None, :] >= (width - lengths)[:, None]).long().to(device)
        ids = torch.tensor([[r.next_token] for r in self._active])
        try:
            logits = self._forward(ids.to(device), mask, lengths[:, None].to(device), self._cache)
        except Exception as exc:  # the shared pass failed: every running request gets the error
            logger.exception("batched decoding step failed")
            for req in self._active:
                req.done = req.failed = True
                req.out.put(("error", exc, None))
            self._active, self._cache = [], None
            return
        self._steps += 1
        for req in self._active:
            req.length += 1
        self._emit(self._active, logits)

    def _emit(self, reqs: list[BatchRequest], logits: torch.Tensor) -> None:
        """Each request's next token from its row of `logits`, picked together (constrained rows masked first)."""
        try:
            _mask_constrained(reqs, logits)
            picks = pick_tokens(logits, [r.params for r in reqs], [r.seen for r in reqs],
                                [r.generator for r in reqs], [r.with_probs for r in reqs])
        except Exception as exc:  # the shared part failed: no request can go on
            picks = [exc] * len(reqs)
        for req, pick in zip(reqs, picks, strict=False):
            if isinstance(pick, Exception):  # this request's sampling failed (say, NaN scores): only it ends
                logger.error("sampling failed: %s", pick)
                req.done = req.failed = True
                req.out.put(("error", pick, None))
                continue
            token, prob = pick
            if req.matcher is not None and not req.matcher.accept_token(token):
                req.done = req.failed = True
                req.out.put(("error", RuntimeError(f"the grammar refused token {token} it had allowed"), None))
                continue
            req.generated += 1
            req.next_token = token
            req.tokens.append(token)
            if req.params.repetition_penalty != 1.0:
                req.seen.add(token)
            req.out.put(("token", token, prob))
            ended = req.matcher is not None and req.matcher.is_terminated()
            if ended or token in self.eos or req.generated >= req.params.max_new_tokens:
                req.done = True
                req.out.put(("end", None, None))

    def _retire(self) -> None:
        """Drop finished and stopped requests from the batch and the cache, and padding nobody needs any more."""
        keep = []
        for i, req in enumerate(self._active):
            if not req.done and req.stop.is_set():
                req.done = True
                req.out.put(("end", None, None))
            if not req.done:
                keep.append(i)
        if len(keep) == len(self._active):
            return
        self._served += len(self._active) - len(keep)
        if self.prefixes.max_bytes:  # the prompt and the reply (but its last token, not run yet): a chat's next start
            for i, req in enumerate(self._active):
                if i not in keep and not req.failed and req.length:
                    self.prefixes.put(req.owner, req.ids + req.tokens[:-1], _row_layers(self._cache, i, req.length))
        self._active = [self._active[i] for i in keep]
        if not self._active:
            self._cache = None
            return
        index = torch.tensor(keep, device=self._cache.layers[0].keys.device)
        width = self._cache.get_seq_length()
        cut = width - max(r.length for r in self._active)
        for layer in self._cache.layers:
            layer.keys = layer.keys[index, :, cut:]
            layer.values = layer.values[index, :, cut:]


def _mask_constrained(reqs: list[BatchRequest], logits: torch.Tensor) -> None:
    """Set the scores of tokens each constrained row's grammar forbids to -inf; free rows are left alone."""
    rows = [i for i, r in enumerate(reqs) if r.matcher is not None]
    if not rows:
        return
    import xgrammar as xgr

    bitmask = xgr.allocate_token_bitmask(len(reqs), logits.shape[-1])
    for i in rows:
        reqs[i].matcher.fill_next_token_bitmask(bitmask, i)
    xgr.apply_token_bitmask_inplace(logits, bitmask, indices=rows)


def _row_layers(cache, row: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Row `row`'s keys and values for its last `length` positions (its real tokens: padding is on the left)."""
    return [(layer.keys[row:row + 1, :, -length:], layer.values[row:row + 1, :, -length:]) for layer in cache.layers]


def _pad_left(t: torch.Tensor, n: int) -> torch.Tensor:
    if n == 0:
        return t
    return torch.cat([t.new_zeros((*t.shape[:2], n, t.shape[3])), t], dim=2)


def check_batchable(cache) -> None:
    """Raise NotBatchable unless every cache layer is a plain growing key/value layer."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer or layer.keys.dim() != 4 for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers or []})
        raise NotBatchable(f"cache layers {kinds or type(cache).__name__} cannot be stacked")


def probe(model) -> bool:
    """Whether `model` can run in a `Batcher` (one tiny forward pass)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    try:
        with torch.inference_mode():
            ids = torch.tensor([[1, 2]], device=model.device)
            positions = torch.tensor([[0, 1]], device=model.device)
            model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions, use_cache=True,
                  **{kw: cache})
        check_batchable(cache)
    except Exception as exc:  # any failure: generate() one request at a time, as before
        logger.info("%s runs without batching: %s", type(model).__name__, exc)
        return False
    return True


@atexit.register
def _close_all() -> None:
    for batcher in list(_LIVE):
        batcher.close()
