"""Several generations streamed at once, one per column: the engine work behind side by side and the arena.

Every column's stream is consumed in its own thread, so all of them reach the engine together: columns on the same
model join that model's batch in the same step, columns on different models run side by side. Each column has its
own stop event (a generation sets its own when it ends); the shared `stop` stops them all.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from compare.protocols import TextGenerator, failure_text
from engines.params import GenerationParams

MAX_COLUMNS = 4


@dataclass(frozen=True)
class ColumnRequest:
    """What one column sends: a model, its sampling settings, and its own conversation (chat) or prompt."""

    model: str
    params: GenerationParams
    messages: tuple[dict, ...] = ()  # chat mode
    prompt: str = ""  # completion mode


@dataclass
class ColumnState:
    """What a column shows so far; `stats` arrives with the last update, `error` when the column failed."""

    text: str = ""
    stats: dict = field(default_factory=dict)
    error: str = ""
    done: bool = False


def _pump(engine: TextGenerator, req: ColumnRequest, index: int, stop: threading.Event, owner: str,
          out: queue.SimpleQueue) -> None:
    try:
        if req.messages:
            stream = engine.chat(req.model, list(req.messages), req.params, stop=stop, owner=owner)
        else:
            stream = engine.complete(req.model, req.prompt, req.params, stop=stop, owner=owner)
        for update in stream:
            out.put((index, "update", update))
        out.put((index, "end", None))
    except Exception as exc:  # the column shows why (an internal fault only as a logged id); the others go on
        out.put((index, "error", failure_text(exc)))


def stream_columns(engine: TextGenerator, requests: list[ColumnRequest], stop: threading.Event,
                   owner: str = "") -> Iterator[list[ColumnState]]:
    """Start every column now; yield all columns' states each time something arrives, until all have ended.

    `stop` is set when the caller goes away or the streams end, which also ends the stop-linking thread.
    """
    out: queue.SimpleQueue = queue.SimpleQueue()
    events = [threading.Event() for _ in requests]
    states = [ColumnState() for _ in requests]

    def link() -> None:
        stop.wait()
        for event in events:
            event.set()

    threading.Thread(target=link, name="compare-stop", daemon=True).start()
    for i, req in enumerate(requests):
        threading.Thread(target=_pump, args=(engine, req, i, events[i], owner, out), name=f"compare-{i}",
                         daemon=True).start()
    try:
        while not all(s.done for s in states):
            batch = [out.get()]
            while True:  # everything that arrived meanwhile becomes one yield
                try:
                    batch.append(out.get_nowait())
                except queue.Empty:
                    break
            for index, kind, value in batch:
                _apply(states[index], kind, value)
            yield [ColumnState(s.text, dict(s.stats), s.error, s.done) for s in states]
    finally:
        stop.set()


def _apply(state: ColumnState, kind: str, value: Any) -> None:
    if kind == "update":
        state.text += value.delta
        if value.stats is not None:
            state.stats = asdict(value.stats)
    elif kind == "error":
        state.error, state.done = value, True
    else:
        state.done = True
