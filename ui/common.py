"""Pieces shared by the tabs: sampling controls, the per-session stop registry, error translation."""

from __future__ import annotations

import functools
import inspect
import queue
import threading
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import gradio as gr

from config import AppConfig
from engines.params import LIMITS, GenerationParams, parse_params
from errors import InvalidInput
from ui.errors import guarded

T = TypeVar("T")
# Chat and Text generation wait in one UI queue (people see their place in it) sized like a model's batch, so
# requests wait there rather than out of sight in the batch's own queue.
TEXT_QUEUE, UNBATCHED_TEXT_SLOTS = "text", 8


def text_slots(config: AppConfig) -> int:
    """Generations the UI runs at once: a model's batch (--max-batch), or 8 `generate()` threads without batching."""
    return config.max_batch if config.max_batch > 0 else UNBATCHED_TEXT_SLOTS


PARAM_NAMES = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens", "seed")


def read_ahead(updates: Iterator[T]) -> Iterator[list[T]]:
    """Start consuming `updates` in a thread now; the result yields, each time, everything that arrived since.

    The model starts while the handler's first yield (the user's message) is still being sent, and a browser
    that reads slower than the model gets fewer, larger updates instead of falling behind token by token. The
    handler's stop event ends the producer (StopRegistry.generation sets it when the request ends).
    """
    arrived: queue.SimpleQueue = queue.SimpleQueue()

    def pump() -> None:
        try:
            for update in updates:
                arrived.put((True, update))
            arrived.put((False, None))
        except BaseException as exc:  # raised again in the handler, which turns it into a message
            arrived.put((False, exc))

    threading.Thread(target=pump, name="read-ahead", daemon=True).start()

    def batches() -> Iterator[list[T]]:
        while True:
            batch, end = [], None
            more, value = arrived.get()
            while True:
                if not more:
                    end = value if value is not None else StopIteration
                    break
                batch.append(value)
                try:
                    more, value = arrived.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
            if end is StopIteration:
                return
            if end is not None:
                raise end

    return batches()


def bind(fn: Callable, **deps: Any) -> Callable:
    """`fn` with its keyword-only dependencies filled in, for use as an event handler.

    Unlike functools.partial, the result shows gradio the resolved type hints (it injects `gr.Request` and event
    data such as `gr.EditData` by type) and stays a generator function when `fn` is one (so it streams).
    """
    hints = typing.get_type_hints(fn)
    signature = inspect.signature(fn)
    safe = guarded(fn)  # the error policy: a person never sees a traceback or an internal error as their fault
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def bound(*args: Any, **kwargs: Any) -> Any:
            yield from safe(*args, **kwargs, **deps)
    else:
        @functools.wraps(fn)
        def bound(*args: Any, **kwargs: Any) -> Any:
            return safe(*args, **kwargs, **deps)
    del bound.__wrapped__  # gradio must see the signature below, not the original one
    bound.__signature__ = signature.replace(
        parameters=[p for name, p in signature.parameters.items() if name not in deps],
        return_annotation=hints.get("return", inspect.Signature.empty))
    bound.__annotations__ = {k: v for k, v in hints.items() if k not in deps}
    return bound


@dataclass
class ParamControls:
    """The sampling widgets, in the order handlers receive their values."""

    temperature: gr.Slider
    top_p: gr.Slider
    top_k: gr.Slider
    repetition_penalty: gr.Slider
    max_new_tokens: gr.Slider
    seed: gr.Number

    def components(self) -> list[gr.components.Component]:
        return [getattr(self, name) for name in PARAM_NAMES]


def build_param_controls(max_new_tokens_limit: int, defaults: GenerationParams | None = None) -> ParamControls:
    """Sliders for the sampling parameters (the server validates again: sliders are only a hint)."""
    d = defaults or GenerationParams()

    def slider(name: str, label: str, value: float, step: float, info: str) -> gr.Slider:
        low, high, _ = LIMITS[name]
        high = max_new_tokens_limit if name == "max_new_tokens" else high
        return gr.Slider(low, high, value=value, step=step, label=label, info=info)

    return ParamControls(
        temperature=slider("temperature", "Temperature", d.temperature, 0.05, "0 = greedy (deterministic)"),
        top_p=slider("top_p", "Top-p", d.top_p, 0.01, "nucleus sampling"),
        top_k=slider("top_k", "Top-k", d.top_k, 1, "0 = off"),
        repetition_penalty=slider("repetition_penalty", "Repetition penalty", d.repetition_penalty, 0.01,
                                  "1 = off; 1.1-1.2 stops small models looping"),
        max_new_tokens=slider("max_new_tokens", "Max new tokens", d.max_new_tokens, 1, "length limit of the reply"),
        seed=gr.Number(value=d.seed, precision=0, label="Seed", info="-1 = random; the seed used is shown"),
    )


def params_or_error(max_new_tokens_limit: int, values: tuple[Any, ...]) -> GenerationParams:
    """Parse the control values in PARAM_NAMES order, turning a bad value into a gr.Error."""
    try:
        return parse_params(max_new_tokens_limit, **dict(zip(PARAM_NAMES, values, strict=True)))
    except InvalidInput as exc:
        raise gr.Error(str(exc)) from None


def preset_values(presets: dict[str, dict[str, float]], name: str) -> list[Any]:
    """Slider updates for a named preset; parameters the preset leaves out keep their value."""
    preset = presets.get(name)
    if preset is None:
        raise gr.Error(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    return [preset.get(p, gr.skip()) for p in PARAM_NAMES]


@dataclass
class PageLoad:
    """Work a tab wants done when a page opens (fill a table, list choices); app.py wires every one."""

    fn: Callable[..., Any]
    inputs: list[Any]
    outputs: list[Any]

    def wire(self, demo: gr.Blocks) -> None:
        demo.load(self.fn, self.inputs, self.outputs, api_visibility="private")
