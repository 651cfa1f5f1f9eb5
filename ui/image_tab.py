"""Text-to-image tab: any diffusers text-to-image model, a step progress bar, interrupt, PNGs that remember settings."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from engines.catalog import Catalog, shipped_catalog
from engines.image_meta import read_png_meta, save_png
from engines.image_params import IMAGE_LIMITS, SCHEDULERS, ImageParams, parse_image_params
from errors import InvalidInput
from identity import rate_key_of, session_of
from serving.sessions import StopRegistry
from ui.common import bind
from ui.errors import to_gr_error
from ui.protocols import HistoryRecorder, ImageGenerator

EMBEDDED_T2I = "hf-playground/tiny-t2i-64"  # same id as engines.image.EMBEDDED_T2I (no torch import here)
TASK = "text-to-image"
# the inputs of /text_to_image, in order; restored from a dropped PNG under the same names
SETTINGS = ("negative_prompt", "model", "steps", "guidance_scale", "seed", "width", "height", "num_images",
            "scheduler", "guidance_rescale", "attention_slicing", "vae_tiling")
logger = logging.getLogger(__name__)
GenerateOutput = tuple[list[tuple[str, str]], int, dict[str, Any]]


@dataclass
class ImageDeps:
    """Everything the Text to image tab needs: `build` lays it out from these, its handlers get them injected."""

    engine: ImageGenerator
    registry: StopRegistry
    out_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hf-playground-images-")))
    catalog: Catalog = field(default_factory=shipped_catalog)  # model choices
    history: HistoryRecorder | None = None  # each image is recorded when set
    owner: gr.State | None = None  # the page's owner id (app.py)


@dataclass
class ImageTab:
    """Handles other tabs may need."""

    prompt: gr.Textbox
    gallery: gr.Gallery
    model: gr.Dropdown


def stop_key(request: gr.Request | None) -> str:
    """Image runs have their own stop slot, so a chat Stop never ends an image and vice versa."""
    return session_of(request) + "#image"


def step_reporter(progress: Any, every_s: float = 0.1) -> Any:
    """A (done, total) callback that drives gr.Progress with the time left, at most every `every_s` seconds.

    A person sees ten updates a second as smooth; each update is work for the server while the model runs.
    """
    start = time.perf_counter()
    last = [start]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] < every_s and done < total:
            return
        last[0] = now
        left = (now - start) / max(done, 1) * (total - done)
        progress((done, total), desc=f"Denoising: step {done}/{total}, about {left:.1f} s left", unit="steps")

    return report


def save_results(result: Any, out_dir: Path) -> list[tuple[str, str]]:
    """Write each image as a PNG carrying its own generation parameters; gallery items with captions."""
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for i, image in enumerate(result.images):
        meta = result.metadata(i)
        path = save_png(image, meta, out_dir / f"t2i-{meta['seed']}-{time.time_ns()}.png")
        items.append((str(path), f"seed {meta['seed']}"))
    return items


def details(result: Any) -> dict[str, Any]:
    return {"model": result.model, "source": result.source, "seed": result.seed,
            "seeds": [(result.seed + i) % 2**32 for i in range(len(result.images))],
            "size": f"{result.params.width}x{result.params.height}", "steps_done": result.steps_done,
            "interrupted": result.interrupted, **result.timings}


def text_to_image(prompt: str, negative_prompt: str, model: str, steps: float, guidance_scale: float, seed: float,
                  width: float, height: float, num_images: float, scheduler: str, guidance_rescale: float = 0.0,
                  attention_slicing: bool = False, vae_tiling: bool = False, browser_id: str = "",
                  request: gr.Request = None, progress: gr.Progress = gr.Progress(), *,
                  deps: ImageDeps) -> GenerateOutput:
    """Generate images from a prompt; returns the images (PNG with metadata), the seed used and run details."""
    try:
        params: ImageParams = parse_image_params(prompt, negative_prompt, steps, guidance_scale, seed, width, height,
                                                 num_images, scheduler, guidance_rescale, attention_slicing,
                                                 vae_tiling)
    except InvalidInput as exc:
        raise gr.Error(str(exc)) from None
    if params.rounded_from:
        gr.Warning(f"Width and height must be multiples of 8: {params.rounded_from[0]}x{params.rounded_from[1]} "
                   f"was rounded to {params.width}x{params.height}.")
    model = (model or "").strip() or EMBEDDED_T2I
    with deps.registry.generation(stop_key(request), on_timeout=gr.Warning, rate_key=rate_key_of(request)) as stop:
        try:
            result = deps.engine.generate(model, params, stop=stop, progress=step_reporter(progress))
        except Exception as exc:
            raise to_gr_error(exc, f"Could not generate with {model}") from None
    if result.interrupted:
        gr.Warning(f"Interrupted at step {result.steps_done} of {params.steps}: the images are unfinished.")
    if result.note:
        gr.Warning(result.note)
    items = save_results(result, deps.out_dir)
    record_images(deps, request, browser_id, model, params, result, items)
    return items, result.seed, details(result)


def record_images(deps: ImageDeps, request: gr.Request | None, browser_id: str, model: str, params: Any,
                  result: Any, items: list[tuple[str, str]]) -> None:
    """Keep every image (PNG with its parameters) in the user's history; never fails the generation."""
    if deps.history is None:
        return
    from identity import owner_of

    owner = owner_of(request, browser_id)
    for i, (path, _) in enumerate(items):
        meta = result.metadata(i)
        try:
            deps.history.record(owner, "image", params.prompt, f"{params.width}x{params.height} image", model, meta,
                                meta.get("seed"), result.timings, image_png=Path(path).read_bytes())
        except Exception:  # the image is already shown; the log says why history missed it
            logger.exception("could not record an image generation")


def interrupt(request: gr.Request = None, *, registry: StopRegistry) -> str:
    """Stop this session's running image generation at its next step."""
    return "interrupted" if registry.stop(stop_key(request)) else "nothing to interrupt"


def restore(file: str | None) -> list[Any]:
    """Read the settings stored in a generated PNG and put them back in the controls (prompt first)."""
    if not file:
        return [gr.skip()] * (1 + len(SETTINGS))
    try:
        meta = read_png_meta(file)
    except OSError as exc:
        raise gr.Error(f"Expected a PNG made by this tab; could not read the file: {exc}") from None
    if not meta:
        raise gr.Error("This image carries no generation parameters (expected a PNG made by this tab, or by a tool "
                       "writing a 'parameters' text chunk).")
    meta = {k: v for k, v in meta.items() if not (k == "scheduler" and v not in SCHEDULERS)}
    return [meta.get(name, gr.skip()) for name in ("prompt", *SETTINGS)]


def _slider(name: str, label: str, value: float, step: float, info: str = "") -> gr.Slider:
    low, high, _ = IMAGE_LIMITS[name]
    return gr.Slider(low, high, value=value, step=step, label=label, info=info or None)


def _layout(catalog: Catalog) -> dict[str, Any]:
    ui: dict[str, Any] = {}
    choices = catalog.choices(TASK) or [EMBEDDED_T2I]
    with gr.Row():
        with gr.Column(scale=3):
            ui["prompt"] = gr.Textbox(label="Prompt", lines=2, elem_id="t2i-prompt",
                                      placeholder="a small red circle at the top left on a white background")
            ui["negative_prompt"] = gr.Textbox("", label="Negative prompt", lines=1)
            with gr.Row():
                ui["generate"] = gr.Button("Generate", variant="primary", elem_id="t2i-generate")
                ui["interrupt"] = gr.Button("Interrupt", variant="stop")
                ui["status"] = gr.Textbox(show_label=False, interactive=False, container=False, scale=2,
                                          placeholder="interrupt status")
            ui["gallery"] = gr.Gallery(label="Images", columns=4, height=420, object_fit="contain", format="png",
                                       buttons=["download", "fullscreen"], interactive=False, elem_id="t2i-gallery")
            with gr.Row():
                ui["seed_used"] = gr.Number(label="Seed used", precision=0, interactive=False)
                ui["reuse"] = gr.Button("Reuse this seed", size="sm")
            ui["details"] = gr.JSON(label="Run details")
        with gr.Column(scale=2):
            ui["model"] = gr.Dropdown(choices, value=choices[0], label="Model", allow_custom_value=True,
                                      info="hub id or local folder of a diffusers text-to-image pipeline")
            ui["steps"] = _slider("steps", "Steps", 20, 1)
            ui["guidance_scale"] = _slider("guidance_scale", "Guidance scale", 4.0, 0.5, "1 = no guidance")
            ui["seed"] = gr.Number(value=-1, precision=0, label="Seed", info="-1 = random; the seed used is shown")
            with gr.Row():
                ui["width"] = _slider("width", "Width", 64, 8, "64 for the embedded model, 512 for SD 1.5")
                ui["height"] = _slider("height", "Height", 64, 8)
            ui["num_images"] = _slider("num_images", "Images per prompt", 4, 1)
            ui["scheduler"] = gr.Dropdown(list(SCHEDULERS), value="default", label="Scheduler")
            with gr.Accordion("Advanced", open=False):
                ui["guidance_rescale"] = _slider("guidance_rescale", "Guidance rescale", 0.7, 0.05,
                                                 "0.7 suits v-prediction models such as the embedded one")
                ui["attention_slicing"] = gr.Checkbox(label="Attention slicing (less memory, slower)")
                ui["vae_tiling"] = gr.Checkbox(label="VAE tiling (large images on small GPUs)")
            ui["drop"] = gr.File(label="Drop a generated PNG to restore its settings", file_types=[".png"],
                                 type="filepath", elem_id="t2i-drop")
    return ui


def build(deps: ImageDeps) -> ImageTab:
    """Lay out the Text-to-image tab, then wire its events."""
    ui = _layout(deps.catalog)
    owner = deps.owner if deps.owner is not None else gr.State("")
    inputs = [ui["prompt"], *(ui[name] for name in SETTINGS)]
    outputs = [ui["gallery"], ui["seed_used"], ui["details"]]
    # preprocess=False: raw values reach the handler, which validates them itself and names the bad setting
    gr.on([ui["generate"].click, ui["prompt"].submit], bind(text_to_image, deps=deps), [*inputs, owner], outputs,
          api_name="text_to_image", concurrency_limit=2, concurrency_id="image", preprocess=False)
    ui["interrupt"].click(bind(interrupt, registry=deps.registry), None, ui["status"], api_name="interrupt_image",
                          concurrency_limit=None, queue=False)
    ui["reuse"].click(lambda s: s, ui["seed_used"], ui["seed"], api_visibility="private", queue=False)
    ui["drop"].upload(restore, ui["drop"], inputs, api_name="restore_image_settings", queue=False)
    return ImageTab(prompt=ui["prompt"], gallery=ui["gallery"], model=ui["model"])
