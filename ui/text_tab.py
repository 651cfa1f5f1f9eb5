"""Text generation tab: raw completion of a prompt, streamed, with stop strings, timings and token probabilities."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import gradio as gr

from engines.catalog import Catalog, shipped_catalog
from engines.generation import GenerationError
from serving.sessions import StopRegistry
from ui.chat_tab import KEPT, asker_of, record
from ui.chat_tab import stop as stop_generation
from ui.common import (
    TEXT_QUEUE,
    ParamControls,
    bind,
    build_param_controls,
    params_or_error,
    preset_values,
    read_ahead,
)
from ui.errors import to_gr_error
from ui.output_format import FREE, build_output_format, constraint_of
from ui.protocols import HistoryRecorder, TextGenerator

MAX_STOP_STRINGS = 8
# probability buckets for the token view, most confident first
BUCKETS = (("≥ 90%", 0.9, "#16a34a"), ("50–90%", 0.5, "#84cc16"), ("10–50%", 0.1, "#f59e0b"), ("< 10%", 0.0, "#ef4444"))
GenerateOutput = tuple[str, dict[str, Any], list[tuple[str, float | None]]]


@dataclass
class TextDeps:
    """Everything the Text generation tab needs: `build` lays it out from these, its handlers get them injected."""

    engine: TextGenerator
    registry: StopRegistry
    max_new_tokens: int
    catalog: Catalog = field(default_factory=shipped_catalog)  # model choices and presets
    history: HistoryRecorder | None = None  # every completion is recorded when set
    owner: gr.State | None = None  # the page's owner id (app.py)
    slots: int = 8  # generations the UI runs at once (ui.common.text_slots)


@dataclass
class TextTab:
    prompt: gr.Textbox
    output: gr.Textbox
    model: gr.Dropdown
    controls: ParamControls


def parse_stop_strings(text: str) -> tuple[str, ...]:
    """One stop string per line; `\\n` and `\\t` stand for a newline and a tab."""
    stops = tuple(line.replace("\\n", "\n").replace("\\t", "\t") for line in (text or "").splitlines() if line)
    if len(stops) > MAX_STOP_STRINGS:
        raise gr.Error(f"At most {MAX_STOP_STRINGS} stop strings, got {len(stops)}.")
    if any(len(s) > 100 for s in stops):
        raise gr.Error("Each stop string must be at most 100 characters.")
    return stops


def generate(prompt: str, stop_strings: str, model: str, show_probs: bool, temperature: float, top_p: float,
             top_k: int, repetition_penalty: float, max_new_tokens: int, seed: int, output_kind: str = FREE,
             output_spec: str = "", browser_id: str = "", request: gr.Request = None, *,
             deps: TextDeps) -> Iterator[GenerateOutput]:
    """Stream a completion of `prompt`."""
    if not (prompt or "").strip():
        raise gr.Error("The prompt is empty: type the beginning of a text to continue.")
    params = params_or_error(deps.max_new_tokens, (temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed))
    stop_text = stop_strings
    stops = parse_stop_strings(stop_text)
    constraint = constraint_of(output_kind, output_spec)
    held = {"constraint": constraint} if constraint is not None else {}
    text, stats, tokens = "", {}, []
    if not deps.engine.is_loaded(model):
        gr.Info(f"Loading {model}: the completion waits for it.")
    asker = asker_of(request, browser_id)
    with deps.registry.generation(asker.session, on_timeout=gr.Warning, rate_key=asker.rate) as stop:
        try:
            for batch in read_ahead(deps.engine.complete(model, prompt, params, stop_strings=stops, stop=stop,
                                                         with_probs=bool(show_probs), owner=asker.owner,
                                                         **held)):
                for update in batch:
                    text += update.delta
                    tokens.extend(update.tokens)
                    stats = asdict(update.stats) if update.stats is not None else stats
                yield text, stats, tokens
        except GenerationError as exc:
            yield text, stats, tokens
            raise to_gr_error(exc, "Generation failed", kept=KEPT) from None
        except Exception as exc:
            raise to_gr_error(exc, f"Could not generate with {model}") from None
    record(deps, asker, "completion", prompt, text, model, params, {**stats, "stop_strings": list(stops)})
    if stats.get("trimmed_prompt_tokens"):
        gr.Warning(f"The prompt is longer than the model accepts: its first {stats['trimmed_prompt_tokens']} "
                   f"tokens were left out.")


def bucket(prob: float | None) -> str | None:
    if prob is None:
        return None
    return next(label for label, low, _ in BUCKETS if prob >= low)


def render_details(stats: dict[str, Any], tokens: list[tuple[str, float | None]]) -> tuple[str, list]:
    """Token counts and timings, and each generated token labelled by its probability."""
    if not stats:
        return "", []
    line = (f"**{stats['prompt_tokens']}** prompt tokens · **{stats['generated_tokens']}** generated · first token "
            f"**{stats['ttft_s'] * 1000:.0f} ms** · **{stats['tokens_per_s']} tokens/s** · finished by "
            f"{stats['finish_reason']} · seed {stats['seed']}")
    return line, [(piece, bucket(prob)) for piece, prob in tokens if piece]


def _layout(catalog: Catalog, max_new_tokens: int) -> tuple[dict[str, Any], ParamControls]:
    ui: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=3):
            ui["prompt"] = gr.Textbox(label="Prompt", lines=6, placeholder="Once upon a time", elem_id="gen-prompt")
            with gr.Row():
                ui["go"] = gr.Button("Generate", variant="primary")
                ui["stop"] = gr.Button("Stop", variant="stop")
            ui["output"] = gr.Textbox(label="Completion", lines=10, buttons=["copy"], elem_id="gen-output")
            ui["details"] = gr.Markdown(elem_id="gen-details")
            ui["tokens"] = gr.HighlightedText(label="Tokens by probability", show_legend=True,
                                              color_map={label: color for label, _, color in BUCKETS})
        with gr.Column(scale=1):
            ui["model"] = gr.Dropdown(catalog.choices("text-generation"), value=catalog.default("text-generation"),
                                      label="Model", allow_custom_value=True, info="hub id or a local folder")
            ui["stops"] = gr.Textbox("", label="Stop strings", lines=2, info="one per line; \\n for a newline")
            ui["probs"] = gr.Checkbox(label="Colour tokens by probability", value=False)
            ui["preset"] = gr.Dropdown(list(catalog.presets), value=None, label="Preset")
            controls = build_param_controls(max_new_tokens)
            ui["format"] = build_output_format()
    ui["stats"], ui["token_list"] = gr.State({}), gr.State([])
    return ui, controls


def build(deps: TextDeps) -> TextTab:
    """Lay out the Text generation tab, then wire its events."""
    catalog = deps.catalog
    ui, controls = _layout(catalog, deps.max_new_tokens)
    owner = deps.owner if deps.owner is not None else gr.State("")
    inputs = [ui["prompt"], ui["stops"], ui["model"], ui["probs"], *controls.components(),
              *ui["format"].components(), owner]
    done = gr.on([ui["go"].click, ui["prompt"].submit], bind(generate, deps=deps), inputs,
                 [ui["output"], ui["stats"], ui["token_list"]], api_name="generate",
                 concurrency_limit=deps.slots,
                 concurrency_id=TEXT_QUEUE, preprocess=False)  # raw values: the handler validates, names a bad one
    done.then(render_details, [ui["stats"], ui["token_list"]], [ui["details"], ui["tokens"]],
              api_name="generation_details")
    ui["stop"].click(bind(stop_generation, registry=deps.registry), None, None, api_visibility="private",
                     concurrency_limit=None)
    ui["preset"].change(partial(preset_values, catalog.presets), ui["preset"], controls.components(),
                        api_visibility="private")
    return TextTab(prompt=ui["prompt"], output=ui["output"], model=ui["model"], controls=controls)
