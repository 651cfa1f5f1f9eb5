"""Text-to-image models: any diffusers text-to-image pipeline, loaded through the shared cache, run step by step.

The embedded default (`hf-playground/tiny-t2i-64`) is a 64x64 model trained by `scripts/train_t2i.py` and shipped
in `assets/t2i-model`; it loads through exactly the same `from_pretrained` path as hub models.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines import image_trace
from engines.cache import Loaded, ModelCache
from engines.device import Placement
from engines.embedded import Progress
from engines.image_params import SCHEDULERS, ImageParams, check_memory
from engines.resolve import ModelNotFound, ModelResolver, Resolved
from engines.text import ModelLoadError
from engines.zerogpu import gpu
from errors import InvalidInput

logger = logging.getLogger(__name__)
TASK = "text-to-image"
EMBEDDED_T2I = "hf-playground/tiny-t2i-64"
StepProgress = Callable[[int, int], None]  # (steps done, steps in total)
# Denoisers below this many parameters are best run on one CPU thread (app.py --threads 1, or ImageEngine(threads=1)):
# measured on 2 cores (scripts/bench_image.py), the embedded 4M-parameter UNet was no faster on 2 threads with the
# cores idle, and 5-10x slower with the other core busy (each op waits at the OpenMP barrier for a parked thread).
# Not switched automatically: torch.set_num_threads from gradio's worker threads made the test process abort at exit
# ("terminate called without an active exception") when run with the other tabs' tests.
SMALL_DENOISER_PARAMS = 50_000_000


def remember_processor_signatures(pipe: Any) -> int:
    """Compute each attention processor class's call signature once instead of at every attention call.

    diffusers' `Attention.forward` asks `inspect.signature(processor.__call__)` on every call (14 times per step for
    the embedded UNet); with the signature stored on the function, `inspect` returns it at once. The embedded
    pipeline's 20 steps went from 0.384 to 0.368 s. The signature is the same either way.
    """
    classes = set()
    for component in getattr(pipe, "components", {}).values():
        processors = getattr(component, "attn_processors", None)
        if isinstance(processors, dict):
            classes.update(type(p) for p in processors.values())
    for cls in classes:
        call = cls.__dict__.get("__call__")
        if call is not None and not hasattr(call, "__signature__"):
            call.__signature__ = inspect.signature(call)
    return len(classes)


@dataclass
class ImageModel:
    """A loaded pipeline plus what is needed to swap its scheduler; one generation at a time per model."""

    pipe: Any
    name: str
    scheduler_config: dict
    scheduler_class: type
    call_args: frozenset[str]
    latent_factor: int
    dtype_bytes: int
    device: str = "cpu"  # where it runs (with CPU offload: the GPU); read once, the lookup walks every module
    denoiser_params: int = 0  # UNet / transformer parameters: decides the CPU thread count
    traced: Any = None  # engines.image_trace.TracedDenoiser when the denoiser runs as traced graphs
    lock: threading.Lock = field(default_factory=threading.Lock)

    def activity(self) -> str:
        """For the Models tab: the traced denoiser's graphs, which hold a copy of its weights each."""
        return self.traced.describe() if self.traced is not None else ""

    def scheduler_choices(self) -> list[str]:
        """Labels of SCHEDULERS this pipeline's scheduler is compatible with ("default" first)."""
        names = {c.__name__ for c in getattr(self.pipe.scheduler, "compatibles", [])} | {self.scheduler_class.__name__}
        return [label for label, cls in SCHEDULERS.items() if not cls or cls in names]


@dataclass
class ImageResult:
    """What one request produced, plus the facts the tab turns into messages."""

    images: list  # PIL images
    seed: int  # image i used seed + i
    params: ImageParams
    model: str
    source: str
    steps_done: int
    interrupted: bool
    timings: dict[str, float]
    note: str = ""  # e.g. the default model was unreachable and the embedded one was used

    def metadata(self, index: int) -> dict[str, Any]:
        """Parameters that regenerate image `index` alone (its own seed, one image)."""
        meta = self.params.to_dict() | {"seed": (self.seed + index) % 2**32, "num_images": 1, "model": self.model}
        if self.interrupted:
            meta["interrupted_at_step"] = self.steps_done
        return meta


def text2image_classes() -> set[str]:
    from diffusers.pipelines.auto_pipeline import AUTO_TEXT2IMAGE_PIPELINES_MAPPING

    return {cls.__name__ for cls in AUTO_TEXT2IMAGE_PIPELINES_MAPPING.values()} | {"DiffusionPipeline"}


class ImageEngine:
    """Text-to-image over any diffusers pipeline, with models owned by the shared cache.

    Args:
        cache: the app's model cache.
        resolver: finds a model's files.
        placement: device and dtype, or a function giving them (torch loads on first use).
        default_ref: the catalog's default model; when it cannot be found, the embedded model is used instead.
        cpu_offload: None = on for GPUs with less than 8 GiB, else as given (GPU only).
        threads: torch CPU threads for a generation; None = the process's configured count (app.py --threads).
    """

    def __init__(self, cache: ModelCache, resolver: ModelResolver, placement: Placement | Callable[[], Placement], *,
                 default_ref: str = EMBEDDED_T2I, cpu_offload: bool | None = None, threads: int | None = None):
        self.cache, self.resolver, self.placement = cache, resolver, placement
        self.default_ref, self.cpu_offload, self.threads = default_ref, cpu_offload, threads

    # -- loading ---------------------------------------------------------------------------------------------
    def load(self, ref: str, progress: Progress | None = None) -> ImageModel:
        """Load (or reuse) a pipeline. Raises ModelLoadError / ModelNotFound with a message for the user."""
        model = self.cache.get(ref, lambda: self._load(ref, progress))
        if not isinstance(model, ImageModel):
            raise ModelLoadError(f"{ref} is loaded as a {type(model).__name__}, not a text-to-image pipeline")
        return model

    def _load(self, ref: str, progress: Progress | None) -> Loaded:
        resolved = self.resolver.resolve(ref, progress)  # the shipped model resolves there too (REPO_MODELS)
        self._check_is_text2image(resolved)
        try:
            return self._load_resolved(resolved)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load {ref} from {resolved.source}: {exc}") from exc

    def _check_is_text2image(self, resolved: Resolved) -> None:
        from diffusers import DiffusionPipeline

        try:
            index = DiffusionPipeline.load_config(resolved.location, local_files_only=resolved.local_only)
        except (OSError, ValueError):
            raise ModelLoadError(f"{resolved.name} is {self._describe_other(resolved)}, not a diffusers "
                                 f"text-to-image pipeline (no model_index.json); pick one such as "
                                 f"{EMBEDDED_T2I} or stable-diffusion-v1-5/stable-diffusion-v1-5") from None
        kind = index.get("_class_name", "?")
        if kind not in text2image_classes():
            raise ModelLoadError(f"{resolved.name} is a {kind}, not a text-to-image pipeline; pick a text-to-image "
                                 f"model (e.g. a StableDiffusionPipeline)")

    @staticmethod
    def _describe_other(resolved: Resolved) -> str:
        config = Path(resolved.location) / "config.json"
        try:
            if not config.is_file() and resolved.source == "hub":  # a hub id: fetch just its small config
                from huggingface_hub import hf_hub_download

                config = Path(hf_hub_download(resolved.location, "config.json"))
            data = json.loads(config.read_text()) if config.is_file() else None
        except Exception:  # no readable config: say only that it is not a diffusers model
            data = None
        if not data:
            return "not a diffusers model"
        archs = ", ".join(data.get("architectures") or [data.get("model_type", "?")])
        return f"a transformers {data.get('model_type', '?')} model ({archs})"

    def _load_resolved(self, resolved: Resolved) -> Loaded:
        import torch
        from diffusers import AutoPipelineForText2Image

        p = self.placement() if callable(self.placement) else self.placement
        dtype = p.dtype if p.device != "cpu" else torch.float32
        pipe = AutoPipelineForText2Image.from_pretrained(resolved.location, dtype=dtype,
                                                         local_files_only=resolved.local_only)
        offload = p.device == "cuda" and (self.cpu_offload if self.cpu_offload is not None
                                          else torch.cuda.get_device_properties(0).total_memory < 8 * 2**30)
        if offload:
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(p.device)
        pipe.set_progress_bar_config(disable=True)
        modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
        params = sum(t.numel() for m in modules for t in m.parameters())
        memory = sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])
        factor = getattr(pipe, "vae_scale_factor", None) or 8
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        model = ImageModel(pipe=pipe, name=resolved.name, scheduler_config=dict(pipe.scheduler.config),
                           scheduler_class=type(pipe.scheduler), latent_factor=int(factor),
                           dtype_bytes=torch.tensor([], dtype=dtype).element_size(),
                           call_args=frozenset(inspect.signature(pipe.__call__).parameters),
                           device=str(getattr(pipe, "_execution_device", None) or pipe.device),
                           denoiser_params=sum(t.numel() for t in denoiser.parameters()) if denoiser else 0)
        remember_processor_signatures(pipe)
        model.traced = image_trace.install(pipe, model.device, image_trace.files_signature(resolved.location))
        with self.cpu_threads(model):
            self._warm_up(model)
        return Loaded(value=model, task=TASK, device=model.device, dtype=str(dtype).replace("torch.", ""),
                      parameters=params, memory_bytes=memory, source=resolved.source)

    def threads_for(self, model: ImageModel, configured: int) -> int:
        """torch CPU threads for one generation with `model` (`configured`: the count torch has now)."""
        return self.threads or configured

    @contextlib.contextmanager
    def cpu_threads(self, model: ImageModel):
        """Run the block with threads_for(model) torch threads in this thread, then restore the count.

        Set in the thread that runs the model (a gradio worker), as engines/generation.py does for text.
        """
        import torch

        configured = torch.get_num_threads()
        wanted = configured if model.device != "cpu" else self.threads_for(model, configured)
        if wanted != configured:
            torch.set_num_threads(wanted)
        try:
            yield wanted
        finally:
            if wanted != configured:
                torch.set_num_threads(configured)

    @staticmethod
    def _warm_up(model: ImageModel) -> None:
        """One step right after loading: the first call faults pages in and is much slower.

        A tiny image, or with a traced denoiser the model's own size (its graph for one image with guidance).
        """
        size = 8 * model.latent_factor
        if model.traced is not None:
            size = int(getattr(model.pipe.unet.config, "sample_size", 8) or 8) * model.latent_factor
        try:
            model.pipe("warm-up", num_inference_steps=1, height=size, width=size, output_type="latent")
        except Exception:  # a pipeline with unusual size rules: the first real request warms it instead
            logger.info("warm-up of %s skipped", model.name, exc_info=True)

    # -- generation ------------------------------------------------------------------------------------------
    def _borrow(self, ref: str):
        """The model to use, and a note when the default model was replaced by the embedded one."""
        try:
            self.load(ref)
            return ref, ""
        except (ModelNotFound, ModelLoadError) as exc:
            if ref != self.default_ref or ref == EMBEDDED_T2I:
                raise
            logger.warning("default text-to-image model %s unavailable (%s); using %s", ref, exc, EMBEDDED_T2I)
            self.load(EMBEDDED_T2I)
            return EMBEDDED_T2I, f"{ref} is not available ({exc}); the embedded {EMBEDDED_T2I} was used instead"

    @gpu
    def generate(self, ref: str, params: ImageParams, stop: threading.Event | None = None,
                 progress: StepProgress | None = None) -> ImageResult:
        """Generate `params.num_images` images for `params.prompt`.

        Args:
            ref: hub id or local folder of a text-to-image pipeline.
            params: validated settings (see engines.image_params.parse_image_params).
            stop: when set, the run ends at the next step; the images so far are decoded and returned.
            progress: called after every denoising step with (done, total).
        Returns:
            The images, the seed used (image i used seed + i), timings and whether it was interrupted.
        Raises:
            ModelLoadError / ModelNotFound: the model could not be loaded.
            ValueError: the request would not fit in memory, or the scheduler does not suit this model.
        """
        start = time.perf_counter()
        used, note = self._borrow(ref)
        load_s = time.perf_counter() - start
        with self.cache.use(used, lambda: self._load(used, None)) as model:
            check_memory(params, self._free_bytes(model), model.latent_factor, model.dtype_bytes)
            seed = params.seed if params.seed >= 0 else secrets.randbelow(2**32)
            with model.lock, self.cpu_threads(model) as threads:  # a pipeline holds per-call state: one at a time
                images, done, gen_s = self._run(model, params, seed, stop, progress)
        interrupted = bool(stop is not None and stop.is_set())
        timings = {"load_s": round(load_s, 3), "generate_s": round(gen_s, 3),
                   "s_per_image": round(gen_s / max(1, len(images)), 3),
                   "total_s": round(time.perf_counter() - start, 3), "torch_threads": threads}
        source = next((r.source for r in self.cache.rows() if r.key == used), "")
        return ImageResult(images=images, seed=seed, params=params, model=used, source=source, steps_done=done,
                           interrupted=interrupted, timings=timings, note=note)

    def _run(self, model: ImageModel, params: ImageParams, seed: int, stop: threading.Event | None,
             progress: StepProgress | None) -> tuple[list, int, float]:
        import torch

        pipe = model.pipe
        pipe.scheduler = self._scheduler(model, params.scheduler)  # a fresh one: no state left from other calls
        pipe.enable_attention_slicing() if params.attention_slicing else pipe.disable_attention_slicing()
        if model.traced is not None:  # a traced graph has the attention it was traced with
            model.traced.enabled = not params.attention_slicing
        vae = getattr(pipe, "vae", None)
        if vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling() if params.vae_tiling else vae.disable_tiling()
        done = [0]

        def on_step(pipeline: Any, step: int, timestep: Any, tensors: dict) -> dict:
            done[0] = step + 1
            if progress is not None:
                progress(done[0], params.steps)
            if stop is not None and stop.is_set():
                pipeline._interrupt = True  # diffusers skips the remaining steps, then decodes
            return tensors

        gen_device = "cpu" if model.device.startswith(("mps", "meta")) else model.device
        kwargs = dict(prompt=params.prompt, negative_prompt=params.negative_prompt or None,
                      num_inference_steps=params.steps, guidance_scale=params.guidance_scale,
                      guidance_rescale=params.guidance_rescale, width=params.width, height=params.height,
                      num_images_per_prompt=params.num_images, callback_on_step_end=on_step,
                      generator=[torch.Generator(gen_device).manual_seed((seed + i) % 2**32)
                                 for i in range(params.num_images)])
        kwargs = {k: v for k, v in kwargs.items() if k in model.call_args and v is not None}
        start = time.perf_counter()
        with torch.inference_mode():
            images = pipe(**kwargs).images
        return list(images), done[0], time.perf_counter() - start

    @staticmethod
    def _scheduler(model: ImageModel, label: str) -> Any:
        import diffusers

        if label not in model.scheduler_choices():
            raise InvalidInput(f"the {label} scheduler does not work with {model.name} (its scheduler is "
                             f"{model.scheduler_class.__name__}); choose one of {model.scheduler_choices()}")
        cls = getattr(diffusers, SCHEDULERS[label]) if SCHEDULERS[label] else model.scheduler_class
        extra = {"use_karras_sigmas": True} if label.endswith("Karras") else {}
        return cls.from_config(model.scheduler_config, **extra)

    @staticmethod
    def _free_bytes(model: ImageModel) -> int | None:
        import torch

        if model.device.startswith("cuda"):
            return torch.cuda.mem_get_info()[0]
        try:
            import psutil
        except ImportError:
            return None
        return psutil.virtual_memory().available

    def scheduler_choices(self, ref: str) -> list[str]:
        """Schedulers that suit `ref` (loads it)."""
        return self.load(ref).scheduler_choices()
