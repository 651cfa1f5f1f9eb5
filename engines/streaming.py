"""Pieces that turn `generate` into a stream: a queue streamer, a stop flag, incremental decoding, stop strings."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, StoppingCriteria
from transformers.generation.streamers import BaseStreamer


class StopFlag(StoppingCriteria):
    """Ends `generate` at the next token once the event is set (the Stop button, a stop string, a disconnect)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class ProbabilityRecorder(LogitsProcessor):
    """Keeps the last step's token distribution (after repetition penalty, before temperature and top-k/p)."""

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.last = torch.softmax(scores.float(), dim=-1)
        return scores


class QueueStreamer(BaseStreamer):
    """Receives token ids from `generate` (in its thread) and queues (token_id, probability) pairs."""

    def __init__(self, recorder: ProbabilityRecorder | None = None):
        self.out: queue.Queue = queue.Queue()
        self.recorder = recorder
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate first hands over the prompt
            self._prompt_seen = True
            return
        token_id = int(value.reshape(-1)[0])
        prob = None
        if self.recorder is not None and self.recorder.last is not None:
            prob = float(self.recorder.last[0, token_id])
        self.out.put(("token", token_id, prob))

    def end(self) -> None:
        self.out.put(("end", None, None))

    def fail(self, exc: BaseException) -> None:
        self.out.put(("error", exc, None))


class IncrementalDecoder:
    """Decodes one token at a time, holding back bytes until they form whole characters."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        prefix = decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        text = decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return text[len(prefix) :]
        return ""


@dataclass
class StopStringScan:
    """Finds stop strings in streamed text, and holds back a tail that could be the start of one."""

    stops: tuple[str, ...]
    text: str = ""
    emitted: int = 0

    def feed(self, delta: str) -> tuple[str, bool]:
        """Add text; return (safe new text to show, whether a stop string was reached)."""
        self.text += delta
        hits = [i for i in (self.text.find(s, max(0, self.emitted - len(s))) for s in self.stops) if i >= 0]
        if hits:
            end = min(hits)
            out, self.emitted = self.text[self.emitted : end], end
            self.text = self.text[:end]
            return out, True
        hold = max((self._overlap(s) for s in self.stops), default=0)
        safe_end = max(self.emitted, len(self.text) - hold)
        out, self.emitted = self.text[self.emitted : safe_end], safe_end
        return out, False

    def flush(self) -> str:
        out, self.emitted = self.text[self.emitted :], len(self.text)
        return out

    def _overlap(self, stop: str) -> int:
        for n in range(min(len(stop) - 1, len(self.text)), 0, -1):
            if self.text.endswith(stop[:n]):
                return n
        return 0
