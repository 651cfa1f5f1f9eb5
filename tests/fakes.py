"""Fake engines with the TextEngine interface: deterministic words, optional delay, observable stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from engines.generation import GenerationError, GenerationStats, StreamUpdate
from engines.params import GenerationParams
from engines.resolve import ModelNotFound


class FakeTextEngine:
    """Echoes a canned reply word by word; records what it was asked and whether each run ended."""

    def __init__(self, reply: str = "Hello there from the fake model", delay: float = 0.0,
                 fail_after: int | None = None, trimmed_messages: int = 0):
        self.reply, self.delay, self.fail_after, self.trimmed = reply, delay, fail_after, trimmed_messages
        self.calls: list[dict] = []
        self.finished: list[str] = []  # finish reason of every run that ended
        self.active = 0
        self.words_left: dict[int, int] = {}  # per running generation, how many words it has still to send
        self.loaded: list[str] = []
        self._lock = threading.Lock()

    def is_loaded(self, ref: str) -> bool:
        return ref in self.loaded

    def load(self, ref: str, progress=None):
        if ref.startswith("missing/"):
            raise ModelNotFound(f"cannot find model {ref!r}")
        self.loaded.append(ref)
        return object()

    def chat(self, ref: str, messages: list[dict], params: GenerationParams, stop: threading.Event | None = None,
             with_probs: bool = False, stop_strings: tuple[str, ...] = (), owner: str = "",
             constraint=None) -> Iterator[StreamUpdate]:
        self.load(ref)
        self.calls.append({"kind": "chat", "messages": messages, "params": params, "owner": owner,
                           "constraint": constraint})
        yield from self._run(ref, params, stop or threading.Event(), trimmed_messages=self.trimmed)

    def complete(self, ref: str, prompt: str, params: GenerationParams, stop_strings: tuple[str, ...] = (),
                 stop: threading.Event | None = None, with_probs: bool = False,
                 owner: str = "", constraint=None) -> Iterator[StreamUpdate]:
        self.load(ref)
        self.calls.append({"kind": "complete", "prompt": prompt, "params": params, "stops": stop_strings,
                           "owner": owner, "constraint": constraint})
        yield from self._run(ref, params, stop or threading.Event(), with_probs=with_probs)

    def _run(self, ref, params, stop, with_probs=False, **trim) -> Iterator[StreamUpdate]:
        words = self.reply.split(" ")[: params.max_new_tokens]
        with self._lock:
            self.active += 1
        reason, n, start = "eos", 0, time.perf_counter()
        try:
            for i, word in enumerate(words):
                self.words_left[id(stop)] = len(words) - i
                if stop.is_set():
                    reason = "stop"
                    break
                if self.fail_after is not None and i >= self.fail_after:
                    raise GenerationError(f"the model failed after {i} tokens: boom", partial="")
                if self.delay:
                    time.sleep(self.delay)
                n += 1
                piece = word if i == 0 else " " + word
                yield StreamUpdate(delta=piece, tokens=[(piece, 0.5 if with_probs else None)])
        finally:
            with self._lock:
                self.active -= 1
                self.words_left.pop(id(stop), None)
            self.finished.append(reason)
        total = time.perf_counter() - start
        yield StreamUpdate(stats=GenerationStats(
            model=ref, prompt_tokens=3, generated_tokens=n, ttft_s=0.01, total_s=round(total, 4),
            tokens_per_s=10.0, finish_reason=reason, seed=params.seed if params.seed >= 0 else 42, **trim))


class FakeImageEngine:
    """The ImageEngine interface without a pipeline: each image is one flat colour of at most 64x64 pixels, so any
    request size costs nothing; a model other than `models` raises ModelNotFound, as the real resolver would."""

    def __init__(self, models: tuple[str, ...] = ("hf-playground/tiny-t2i-64",)):
        self.models = models
        self.calls = 0

    def generate(self, ref: str, params, stop: threading.Event | None = None, progress=None):
        from PIL import Image

        from engines.image import ImageResult

        if ref not in self.models:
            raise ModelNotFound(f"cannot find model {ref!r}")
        self.calls += 1
        seed = params.seed if params.seed >= 0 else 42
        size = (min(params.width, 64), min(params.height, 64))
        images = [Image.new("RGB", size, ((seed + i) % 256, 0, 0)) for i in range(params.num_images)]
        return ImageResult(images=images, seed=seed, params=params, model=ref, source="fake", steps_done=params.steps,
                           interrupted=False, timings={"generate_s": 0.0})
