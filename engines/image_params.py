"""Text-to-image request settings: parsing, range checks, size rounding and a memory estimate made before any work."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from errors import InvalidInput

# name -> (low, high, kind); the UI sliders use the same bounds
IMAGE_LIMITS: dict[str, tuple[float, float, type]] = {
    "steps": (1, 150, int),
    "guidance_scale": (0.0, 30.0, float),
    "guidance_rescale": (0.0, 1.0, float),
    "width": (32, 2048, int),
    "height": (32, 2048, int),
    "num_images": (1, 8, int),
    "seed": (-1, 2**32 - 1, int),
}
SCHEDULERS = {  # label -> diffusers class name; "default" keeps the pipeline's own scheduler
    "default": "",
    "DDIM": "DDIMScheduler",
    "Euler": "EulerDiscreteScheduler",
    "Euler a": "EulerAncestralDiscreteScheduler",
    "DPM++ 2M": "DPMSolverMultistepScheduler",
    "DPM++ 2M Karras": "DPMSolverMultistepScheduler",
    "UniPC": "UniPCMultistepScheduler",
    "PNDM": "PNDMScheduler",
    "LMS": "LMSDiscreteScheduler",
    "Heun": "HeunDiscreteScheduler",
    "DDPM": "DDPMScheduler",
}


@dataclass(frozen=True)
class ImageParams:
    """One text-to-image request, validated. seed -1 means: draw a random seed (the result says which)."""

    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    guidance_scale: float = 5.0
    seed: int = -1
    width: int = 512
    height: int = 512
    num_images: int = 1
    scheduler: str = "default"
    guidance_rescale: float = 0.0
    attention_slicing: bool = False
    vae_tiling: bool = False
    rounded_from: tuple[int, int] | None = field(default=None, compare=False)  # set when the size was rounded

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("rounded_from")
        return d


def _number(name: str, value: Any) -> float | int:
    low, high, kind = IMAGE_LIMITS[name]
    if isinstance(value, bool) or value is None or value == "":
        raise InvalidInput(f"{name} must be a number between {low} and {high}, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer past float range (about 1e308)
        raise InvalidInput(f"{name} must be between {low} and {high}, got a number too large to use") from None
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number between {low} and {high}, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, got {value!r}")
    if kind is int:
        if number != int(number):
            raise InvalidInput(f"{name} must be a whole number between {low} and {high}, got {value!r}")
        return int(number)
    return number


def round_to_8(value: int) -> int:
    """The nearest multiple of 8 (at least 8): latents are 1/8 of the image size in most pipelines."""
    return max(8, int(math.floor(value / 8 + 0.5)) * 8)


def parse_image_params(prompt: Any, negative_prompt: Any = "", steps: Any = 20, guidance_scale: Any = 5.0,
                       seed: Any = -1, width: Any = 512, height: Any = 512, num_images: Any = 1,
                       scheduler: Any = "default", guidance_rescale: Any = 0.0, attention_slicing: Any = False,
                       vae_tiling: Any = False) -> ImageParams:
    """Check every setting and round the size to multiples of 8.

    Raises:
        ValueError: naming the setting, its allowed range and what arrived.
    """
    prompt = "" if prompt is None else str(prompt).strip()
    if not prompt:
        raise InvalidInput("the prompt is empty: describe the image, e.g. 'a small red circle on a white background'")
    if scheduler in (None, ""):
        scheduler = "default"
    if not isinstance(scheduler, str) or scheduler not in SCHEDULERS:
        raise InvalidInput(f"scheduler must be one of {list(SCHEDULERS)}, got {scheduler!r}")
    w, h = _number("width", width), _number("height", height)
    rw, rh = round_to_8(w), round_to_8(h)
    return ImageParams(
        prompt=prompt, negative_prompt=str(negative_prompt or "").strip(), steps=_number("steps", steps),
        guidance_scale=_number("guidance_scale", guidance_scale), seed=_number("seed", seed), width=rw, height=rh,
        num_images=_number("num_images", num_images), scheduler=scheduler,
        guidance_rescale=_number("guidance_rescale", guidance_rescale or 0.0),
        attention_slicing=bool(attention_slicing), vae_tiling=bool(vae_tiling),
        rounded_from=(w, h) if (rw, rh) != (w, h) else None,
    )


def estimate_bytes(params: ImageParams, latent_factor: int = 8, dtype_bytes: int = 4, heads: int = 8) -> int:
    """A deliberately rough upper estimate of activation memory for one request.

    Dominated by self-attention over latent pixels at full resolution: (tokens^2 x heads) scores per image, doubled
    for classifier-free guidance; attention slicing computes one head at a time. Plus the decoded images.
    """
    tokens = (params.width // latent_factor) * (params.height // latent_factor)
    batch = params.num_images * (2 if params.guidance_scale > 1 else 1)
    per_slice = 1 if params.attention_slicing else heads
    attention = tokens * tokens * per_slice * dtype_bytes * (1 if params.attention_slicing else batch)
    decode = params.width * params.height * 128 * dtype_bytes * (1 if params.vae_tiling else params.num_images)
    return attention + decode


def check_memory(params: ImageParams, available_bytes: int | None, latent_factor: int = 8,
                 dtype_bytes: int = 4) -> None:
    """Refuse a request whose estimate exceeds 80% of the free memory, before any work is done.

    Raises:
        ValueError: with the estimate, what is free and what to lower.
    """
    if available_bytes is None:
        return
    need = estimate_bytes(params, latent_factor, dtype_bytes)
    if need > 0.8 * available_bytes:
        raise InvalidInput(
            f"{params.num_images} image(s) of {params.width}x{params.height} need about {need / 2**30:.1f} GiB, "
            f"but only {available_bytes / 2**30:.1f} GiB is free: lower the size or the number of images"
            + ("" if params.attention_slicing else ", or turn on attention slicing"))
