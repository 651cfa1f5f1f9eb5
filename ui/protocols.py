"""What the tabs need from the engines and stores, as Protocols: the real objects (engines.text.TextEngine,
engines.image.ImageEngine, store.HistoryStore, store.CollectionIndex, databrowser.DatasetBrowser) satisfy them,
and so do the small fakes the handler tests use. Importing this module imports no torch."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engines.constraints import Constraint
    from engines.generation import StreamUpdate
    from engines.image import ImageResult
    from engines.image_params import ImageParams
    from engines.params import GenerationParams

Progress = Callable[[float, str], Any]


class TextGenerator(Protocol):
    """Streams chat replies and raw completions (engines.text.TextEngine)."""

    def is_loaded(self, ref: str) -> bool: ...

    def chat(self, ref: str, messages: list[dict], params: GenerationParams, stop: threading.Event | None = None,
             with_probs: bool = False, stop_strings: tuple[str, ...] = (), owner: str = "",
             constraint: Constraint | None = None) -> Iterator[StreamUpdate]:
        ...

    def complete(self, ref: str, prompt: str, params: GenerationParams, stop_strings: tuple[str, ...] = (),
                 stop: threading.Event | None = None, with_probs: bool = False,
                 owner: str = "", constraint: Constraint | None = None) -> Iterator[StreamUpdate]: ...


class ImageGenerator(Protocol):
    """Generates images step by step, stoppable (engines.image.ImageEngine)."""

    def generate(self, ref: str, params: ImageParams, stop: threading.Event | None = None,
                 progress: Callable[[int, int], Any] | None = None) -> ImageResult: ...


class ModelLoader(Protocol):
    """Loads a model into the shared cache ahead of its first use."""

    def load(self, ref: str, progress: Progress | None = None) -> Any: ...


class HistoryRecorder(Protocol):
    """Keeps each generation in its owner's history (store.HistoryStore)."""

    def record(self, owner: str, kind: str, prompt: str, output: str, model: str, params: dict[str, Any],
               seed: int | None, timings: dict[str, Any], image_png: bytes | None = None) -> Any: ...


class CollectionSearch(Protocol):
    """Answers from an owner's document collections (store.CollectionIndex)."""

    def names(self, owner: str) -> list[str]: ...

    def info(self, owner: str, name: str) -> Any: ...

    def retrieve_for_prompt(self, owner: str, collection: str, query: str, top_k: int = 4,
                            max_chars: int = 2000) -> tuple[str, list[Any]]: ...
