"""What the compare package needs from the rest of the app: the text engine's public interface, History's
recording, and how a failed generation is described."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Protocol

from engines.generation import GenerationError
from engines.params import GenerationParams
from errors import UserError, internal_message, log_internal

# failures that say something about the model or the row, kept as the row's error text (the UserError family
# covers ModelLoadError, ModelNotFound, InputTooLong, QueueFull; OSError a model's unreadable files)
ROW_FAILURES = (GenerationError, UserError, OSError)


def failure_text(exc: Exception) -> str:
    """What a failed row (or column) says: the failure's own message, or an internal error's id for the log."""
    return str(exc) if isinstance(exc, ROW_FAILURES) else internal_message(log_internal(exc, "a generation"))


class TextGenerator(Protocol):
    """The public interface of engines.text.TextEngine that runs use."""

    def chat(self, ref: str, messages: list[dict], params: GenerationParams, stop: threading.Event | None = None,
             **kw: Any) -> Iterator[Any]: ...

    def complete(self, ref: str, prompt: str, params: GenerationParams, stop_strings: tuple[str, ...] = (),
                 stop: threading.Event | None = None, **kw: Any) -> Iterator[Any]: ...

    def is_loaded(self, ref: str) -> bool: ...

    def load(self, ref: str, progress: Any = None) -> Any: ...


class Recorder(Protocol):
    """store.HistoryStore's `record` and `list`."""

    def record(self, owner: str, kind: str, prompt: str, output: str, model: str, params: dict, seed: int | None,
               timings: dict) -> int: ...

    def list(self, owner: str, kind: str = "", model: str = "", date_from: str = "", date_to: str = "",
             limit: int = 50, offset: int = 0) -> list[Any]: ...
