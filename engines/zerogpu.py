"""Hugging Face Spaces ZeroGPU support: `gpu` is `spaces.GPU` when that package is installed, a no-op otherwise."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def _identity(fn: F) -> F:
    return fn


if importlib.util.find_spec("spaces") is not None:  # only present on Spaces
    import spaces

    gpu = spaces.GPU
else:
    gpu = _identity
