"""Device and dtype choice: one mapping from names to torch dtypes, never `eval`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where and in which precision models load."""

    device: str  # "cpu" | "cuda" | "mps"
    dtype_name: str  # "float32" | "bfloat16" | "float16"
    device_map: str  # passed to transformers' from_pretrained (accelerate places the weights)
    note: str = ""  # set when the requested device was not available and we fell back

    @property
    def dtype(self):  # torch.dtype, imported lazily so this module stays light
        import torch

        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype_name]


def choose_placement(device: str = "auto", dtype: str = "auto") -> Placement:
    """Resolve 'auto' and check availability.

    Args:
        device: auto | cpu | cuda | mps.
        dtype: auto | float32 | bfloat16 | float16.

    Returns:
        The placement; a requested but missing accelerator falls back to CPU with `note` saying so.
    """
    import torch

    note = ""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if device == "auto":
        device = "cuda" if cuda else "mps" if mps else "cpu"
    elif device == "cuda" and not cuda or device == "mps" and not mps:
        note = f"{device} was requested but is not available; using the CPU"
        logger.warning(note)
        device = "cpu"
    if dtype == "auto":
        if device == "cuda":
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif device == "mps":
            dtype = "float16"
        else:
            dtype = "float32"  # CPU kernels are fastest and exact in float32
    device_map = "auto" if device == "cuda" else device
    return Placement(device=device, dtype_name=dtype, device_map=device_map, note=note)
